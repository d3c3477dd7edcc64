"""Real vocabularies held out from the fast tokenizer path's development, as model directories.

llama.cpp keeps the tokenizers of many model families (GPT-2, GPT-NeoX, Llama 2 and 3, Qwen2,
DeepSeek, Falcon, StarCoder, Phi-3, Gemma, Command-R...) as tensor-less ``ggml-vocab-*.gguf``
files for its own tokenizer tests, and the llama-cpp-python source package vendors them
(``vendor/llama.cpp/models/``). ``fastokens`` and chatplate's fast path were built and checked on
the small fixtures of ``tests/tokenizer_fixtures.py``; these files are the real vocabularies the
differential tests (``tests/differential/test_real_vocabularies.py``) and
``benchmarks/vocabularies.py`` check it against instead.

Set ``CHATPLATE_LLAMA_CPP_SDIST`` to the sdist (``pip download --no-deps --no-binary :all:
llama-cpp-python==0.3.36 -d DIR``). Each vocabulary is converted by transformers once and cached
under ``~/.cache/chatplate-test-vocabs/<sdist name>/<vocab>`` (``tokenizer.json`` and
``tokenizer_config.json``, as ``save_pretrained`` writes them):

- ``AutoTokenizer.from_pretrained(dir, gguf_file=...)`` first, as a user would load the file: it
  also reads the model config from the file, to pick the tokenizer class;
- when that fails (it does for architectures transformers has no model config for, and for
  configs a tensor-less file leaves invalid), ``TokenizersBackend.from_pretrained``, which builds
  the ``tokenizer.json`` from the tokenizer metadata alone, with the generic class (where both
  succeed, the two files are identical; only ``tokenizer_class`` differs);
- a vocabulary neither converts (no converter for its tokenizer model) is skipped, with both errors.

The manifest (``manifest.json`` beside them) records how each one was converted or why it was
skipped, and holds the texts of llama.cpp's own tokenizer tests (the ``*.gguf.inp`` files).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["llama_cpp_test_texts", "real_vocab_dirs", "sdist_path", "skipped_vocabs"]

SDIST_ENV = "CHATPLATE_LLAMA_CPP_SDIST"
CACHE_ROOT = Path.home() / ".cache" / "chatplate-test-vocabs"
_PREFIX, _SUFFIX = "ggml-vocab-", ".gguf"
_TEST_SEPARATOR = "\n__ggml_vocab_test__\n"  # between the texts of llama.cpp's *.gguf.inp files


def sdist_path() -> Path | None:
    """The llama-cpp-python sdist named by ``$CHATPLATE_LLAMA_CPP_SDIST``, or ``None``."""
    configured = os.environ.get(SDIST_ENV)
    return Path(configured).expanduser() if configured else None


def real_vocab_dirs() -> dict[str, Path]:
    """``{vocab: model directory}`` for each vocabulary transformers converts ({} without the sdist)."""
    manifest = _manifest()
    return {name: Path(entry["path"]) for name, entry in manifest.get("converted", {}).items()}


def skipped_vocabs() -> dict[str, str]:
    """``{vocab: why}`` for the vocabularies transformers does not convert."""
    return dict(_manifest().get("skipped", {}))


def llama_cpp_test_texts() -> list[str]:
    """The texts of llama.cpp's tokenizer tests, all files together, without repeats."""
    return list(_manifest().get("texts", []))


@cache
def _manifest() -> dict[str, Any]:
    sdist = sdist_path()
    if sdist is None:
        return {}
    if not sdist.is_file():
        raise FileNotFoundError(f"{SDIST_ENV}={sdist}: no such file")
    root = CACHE_ROOT / sdist.name.removesuffix(".tar.gz")
    path = root / "manifest.json"
    previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if previous and all(Path(entry["path"]).is_dir() for entry in previous["converted"].values()):
        return previous
    root.mkdir(parents=True, exist_ok=True)
    manifest = _build_all(sdist, root, previous.get("converted", {}))
    _replace_atomically(path, json.dumps(manifest, ensure_ascii=False, indent=1))
    return manifest


def _build_all(sdist: Path, root: Path, built: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Convert every vocabulary not built yet (``built``: the entries of an earlier manifest)."""
    converted: dict[str, dict[str, str]] = {}
    skipped: dict[str, str] = {}
    texts: dict[str, None] = {}  # ordered, without repeats
    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch)
        with tarfile.open(sdist) as archive:
            for member in archive:
                name = member.name.rsplit("/", 1)[-1]
                if not (member.isfile() and "/models/" in member.name and name.startswith(_PREFIX)):
                    continue
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
                if name.endswith(_SUFFIX):
                    (models / name).write_bytes(data)
                elif name.endswith(_SUFFIX + ".inp"):
                    texts.update(dict.fromkeys(data.decode("utf-8").removesuffix(_TEST_SEPARATOR).split(_TEST_SEPARATOR)))
        with _quiet_transformers():
            for gguf in sorted(models.glob(f"{_PREFIX}*{_SUFFIX}")):
                vocab = gguf.name.removeprefix(_PREFIX).removesuffix(_SUFFIX)
                target = root / vocab
                if target.is_dir():
                    converted[vocab] = built.get(vocab) or {"path": str(target), "how": "an earlier run"}
                    continue
                try:
                    converted[vocab] = {"path": str(target), "how": _convert(gguf, target)}
                except Exception as exc:  # noqa: BLE001 - transformers raises plain ValueErrors and more
                    skipped[vocab] = str(exc)
    return {"converted": converted, "skipped": skipped, "texts": list(texts)}


def _convert(gguf: Path, target: Path) -> str:
    """Convert ``gguf`` into the model directory ``target``; returns how it was converted."""
    from transformers import AutoTokenizer, TokenizersBackend

    how = "AutoTokenizer"
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as auto:  # noqa: BLE001
        # The model config is read only to pick a tokenizer class; the generic class needs none.
        how = f"TokenizersBackend (AutoTokenizer: {_first_line(auto)})"
        try:
            tokenizer = TokenizersBackend.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        except Exception as generic:
            raise RuntimeError(f"AutoTokenizer: {_first_line(auto)}; TokenizersBackend: {_first_line(generic)}") from generic
    # Built beside the target and renamed, so that a run stopped halfway (or a concurrent one)
    # never leaves a partial directory that later runs would take as built.
    building = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        tokenizer.save_pretrained(str(building))
        os.rename(building, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return how


def _replace_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers logs and warns about every converted file (class guesses, missing configs,
    progress bars); none of it is about the vocabulary."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.set_verbosity(verbosity)
        logging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
