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


def test_every_error_and_warning_class_is_exported_under_one_base() -> None:
    import chatplate
    import chatplate.errors as errors

    classes = [
        obj for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, (Exception, Warning)) and obj.__module__ == errors.__name__
    ]
    warnings_ = [cls for cls in classes if issubclass(cls, Warning)]
    assert len(warnings_) >= 7
    for cls in classes:
        assert cls.__name__ in chatplate.__all__, cls.__name__
        assert issubclass(cls, chatplate.ChatplateWarning if issubclass(cls, Warning) else chatplate.ChatplateError)
