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


# Each layer imports only the layers under it: engine and messages, then rendering, then tokens,
# then training, responses and trajectories; ChatTemplate (template.py), sources and the chat
# loop, then the command line, sit on top.
LAYERS = {
    "chatplate.engine": 0, "chatplate.messages": 0, "chatplate.safety": 0, "chatplate.limits": 0,
    "chatplate.errors": 0, "chatplate.tools": 0,
    "chatplate.rendering": 1,
    "chatplate.tokens": 2,
    "chatplate.training": 3, "chatplate.responses": 3, "chatplate.trajectories": 3,
    "chatplate.template": 4, "chatplate.sources": 4, "chatplate.chat": 4, "chatplate.cli": 5,
}


def _layer(module: str) -> int | None:
    for name, level in LAYERS.items():
        if module == name or module.startswith(name + "."):
            return level
    return None


def test_layers_import_downwards_only() -> None:
    """Every chatplate import in the source, at module level or inside a function, points at a
    layer at or under the importing module's (``prepare`` takes a ChatTemplate, but only names
    it for the type checker)."""
    import ast
    from pathlib import Path

    import chatplate

    root = Path(chatplate.__file__).parent
    upward = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("chatplate", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        level = _layer(module)
        if level is None:
            continue
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # Imports for type annotations only run under a type checker, never at run time.
        typing_only = {
            id(inner) for node in ast.walk(tree)
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")
                if node.level:
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                targets = [target] + [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            levels = [lvl for lvl in map(_layer, targets) if lvl is not None]
            # "from .. import engine" names a package under this one: the most specific target counts.
            if levels and levels[-1] > level:
                upward.append(f"{module} imports {targets[-1] if len(targets) > 1 else targets[0]}")
    assert not upward, upward
