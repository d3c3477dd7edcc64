"""``import chatplate`` stays light: no heavy or optional stacks at import time."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["transformers", "torch", "huggingface_hub", "gguf", "rich", "typer", "numpy", "tokenizers", "pyarrow", "datasets", "ray"]


def test_import_is_light() -> None:
    code = "import json, sys, chatplate; print(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout))
    assert not [name for name in HEAVY if name in loaded]


def test_public_names_exist() -> None:
    import chatplate

    for name in chatplate.__all__:
        assert hasattr(chatplate, name), name
