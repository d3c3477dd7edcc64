"""Every case of the public conformance corpus, judged by the corpus's own check.py."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.conformance import adapter
from tests.conftest import corpus_dir, require_corpus

# The corpus and the generated cases pass every template the same extra keywords (as transformers'
# callers do); that most templates ignore some of them is expected here, and tested in
# test_unused_variables.
pytestmark = pytest.mark.filterwarnings("ignore::chatplate.UnusedVariableWarning")


def _check_module():
    path = require_corpus() / "check.py"
    spec = importlib.util.spec_from_file_location("corpus_check", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("corpus_check", module)
    spec.loader.exec_module(module)
    return module


def _template_files() -> list[Path]:
    root = corpus_dir()
    if root is None:
        return []
    return sorted(p for p in (root / "public").glob("*.json") if not p.name.startswith("_"))


def test_corpus_present() -> None:
    root = require_corpus()
    assert len(_template_files()) > 0, f"no template files in {root / 'public'}"


@pytest.mark.parametrize("path", _template_files(), ids=lambda p: p.stem)
def test_template_cases(path: Path) -> None:
    check = _check_module()
    doc = json.loads(path.read_text(encoding="utf-8"))
    failures = []
    for case in doc["cases"]:
        problem = check.check_case(adapter.render, adapter.spans, doc, case, doc.get("now"))
        if problem is not None:
            failures.append(f"{case['id']}: {problem}")
    assert not failures, "\n".join(failures[:5])
