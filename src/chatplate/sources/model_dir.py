"""Model directories, ``tokenizer_config.json``/``chat_template.json`` files and template files:
read exactly as transformers 5.23 ``AutoTokenizer.from_pretrained`` reads them, and written back
as its ``save_pretrained`` writes them.

Where the template comes from, first match wins (``_from_pretrained``):

1. ``chat_template.jinja`` (``default``) and ``additional_chat_templates/NAME.jinja`` (``NAME``):
   when any of these files exists they are the whole set, and the ``chat_template`` key of
   ``tokenizer_config.json`` is ignored;
2. the ``chat_template`` key of ``tokenizer_config.json``: a string, or a list of
   ``{"name": ..., "template": ...}``;
3. ``chat_template.json`` (the legacy processor file), key ``chat_template``.

Special tokens come from ``tokenizer_config.json``; ``special_tokens_map.json`` is merged over it
(it wins) only when the config has no ``added_tokens_decoder``, as transformers does.

Files are read as UTF-8 with ``newline=""``: the text is kept byte for byte (jinja2 itself turns
``\\r\\n`` into ``\\n`` when it compiles, so rendering is unchanged).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CorruptSourceError, InputError
from ..tokens.tokenizer import json_kind, read_json_object
from . import Found

if TYPE_CHECKING:
    from ..template import ChatTemplate

__all__ = [
    "read_model_dir",
    "read_json_file",
    "read_template_file",
    "read_text",
    "save_templates",
    "CHAT_TEMPLATE_FILE",
    "CHAT_TEMPLATE_DIR",
    "TOKENIZER_CONFIG_FILE",
    "LEGACY_CHAT_TEMPLATE_FILE",
    "SPECIAL_TOKENS_MAP_FILE",
]

CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
LEGACY_CHAT_TEMPLATE_FILE = "chat_template.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

# transformers' SPECIAL_TOKENS_ATTRIBUTES: the named tokens its special_tokens_map passes to templates.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


# -- reading ---------------------------------------------------------------------------------


def read_model_dir(directory: str | os.PathLike[str], *, origin: str | None = None) -> Found:
    """Read the chat templates and special tokens of a model directory.

    ``templates`` is empty when the directory has none; ``looked_for`` then lists the files
    searched.

    found = read_model_dir("path/to/model")
    sorted(found.templates), found.bos_token
    (['default', 'tool_use'], '<s>')
    """
    root = Path(directory)
    origin = origin or f"model directory {root}"
    config_path = root / TOKENIZER_CONFIG_FILE
    config = read_json_object(config_path, origin) if config_path.is_file() else None

    templates: dict[str, str] = {}
    jinja_path = root / CHAT_TEMPLATE_FILE
    if jinja_path.is_file():
        templates["default"] = read_text(jinja_path, origin)
    extra_dir = root / CHAT_TEMPLATE_DIR
    if extra_dir.is_dir():
        # Sorted for a stable order; a file called default.jinja overrides chat_template.jinja,
        # as it does in transformers (it is read second).
        for extra in sorted(extra_dir.glob("*.jinja")):
            if extra.is_file():
                templates[extra.name[: -len(".jinja")]] = read_text(extra, origin)

    if not templates and config is not None and config.get("chat_template") is not None:
        templates = parse_chat_template(config["chat_template"], config_path, origin)
    legacy_path = root / LEGACY_CHAT_TEMPLATE_FILE
    if not templates and legacy_path.is_file():
        legacy = read_json_object(legacy_path, origin)
        if legacy.get("chat_template") is not None:
            templates = parse_chat_template(legacy["chat_template"], legacy_path, origin)

    tokens = dict(config or {})
    tokens_map_path = root / SPECIAL_TOKENS_MAP_FILE
    if "added_tokens_decoder" not in tokens and tokens_map_path.is_file():
        # Legacy transformers behaviour: the map overrides the config, key by key, and every
        # object in it is taken as an added token.
        for key, value in read_json_object(tokens_map_path, origin).items():
            if isinstance(value, dict) and key != "extra_special_tokens":
                value = {**value, "__type": "AddedToken"}
            tokens[key] = value
    bos, eos, others = special_tokens_from_config(tokens, config_path)

    found = Found(
        templates=templates,
        origin=origin,
        bos_token=bos,
        eos_token=eos,
        special_tokens=others,
        source=str(root),
        looked_for=[
            str(jinja_path),
            str(extra_dir / "*.jinja"),
            f"{config_path} (key 'chat_template')" + ("" if config is not None else ": no such file"),
            str(legacy_path),
        ],
    )
    if config is not None:
        found.response_template = _response_template(config, config_path)
    if (root / "tokenizer.json").is_file() or (root / "tokenizer.model").is_file():
        found.tokenizer = str(root)
    if not templates:
        found.hint = _directory_hint(root, config is not None)
    return found


def read_json_file(path: str | os.PathLike[str]) -> Found:
    """Read a single ``tokenizer_config.json``-like or ``chat_template.json`` file.

    Only that file is read (not its neighbours): load the directory for the full picture.

    read_json_file("model/tokenizer_config.json").templates
    {'default': "{% for message in messages %}..."}
    """
    path = Path(path)
    origin = f"{path}"
    data = read_json_object(path, origin)
    templates: dict[str, str] = {}
    if data.get("chat_template") is not None:
        templates = parse_chat_template(data["chat_template"], path, origin)
    bos, eos, others = special_tokens_from_config(data, path)
    found = Found(
        templates=templates,
        origin=origin,
        bos_token=bos,
        eos_token=eos,
        special_tokens=others,
        source=str(path),
        looked_for=[f"{path} (key 'chat_template')"],
    )
    found.response_template = _response_template(data, path)
    if path.name == TOKENIZER_CONFIG_FILE and (path.parent / "tokenizer.json").is_file():
        found.tokenizer = str(path.parent)
    if not templates:
        siblings = [name for name in (CHAT_TEMPLATE_FILE, CHAT_TEMPLATE_DIR) if (path.parent / name).exists()]
        if siblings:
            found.hint = (
                f"The directory beside it has {' and '.join(siblings)}: load the directory "
                f"({path.parent}) to read the templates as transformers would."
            )
        elif not _looks_like_tokenizer_config(data):
            raise CorruptSourceError(
                f"{path} is neither a tokenizer_config.json nor a chat_template.json: it has no 'chat_template' "
                f"key and none of the keys a tokenizer config has (top-level keys: {_preview_keys(data)}).",
                source=str(path),
                path=str(path),
            )
    return found


def read_template_file(path: str | os.PathLike[str]) -> Found:
    """Read a ``.jinja`` (or any text) file whose whole content is the template.

    read_template_file("chatml.jinja").templates["default"][:14]
    '{% for message'
    """
    path = Path(path)
    return Found(templates={"default": read_text(path, str(path))}, origin=str(path), source=str(path))


def read_text(path: Path, origin: str | None = None) -> str:
    """The file's text, decoded as UTF-8 with line endings kept exactly as they are.

    read_text(Path("chat_template.jinja"))
    '{% for message in messages %}...'
    """
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise CorruptSourceError(
            f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "chat templates must be saved as UTF-8.",
            source=origin or str(path),
            path=str(path),
        ) from None
    except OSError as exc:
        raise CorruptSourceError(
            f"{path} cannot be read: {exc.strerror or exc}", source=origin or str(path), path=str(path)
        ) from None


def parse_chat_template(value: Any, path: Path, origin: str | None = None) -> dict[str, str]:
    """Turn a ``chat_template`` JSON value into named templates, as transformers accepts it.

    A string is the ``default`` template; a list of ``{"name", "template"}`` objects (or, as
    transformers also tolerates, an object of name -> template) is a named set.

    >>> parse_chat_template([{"name": "default", "template": "A"}, {"name": "rag", "template": "B"}], Path("x"))
    {'default': 'A', 'rag': 'B'}
    """
    where = f"{path}: 'chat_template'"

    def corrupt(problem: str) -> CorruptSourceError:
        return CorruptSourceError(
            f'{where} {problem}. It must be a template string, or a list of {{"name": ..., "template": ...}} objects.',
            source=origin or str(path),
            path=str(path),
        )

    if isinstance(value, str):
        return {"default": value}
    if isinstance(value, list):
        templates: dict[str, str] = {}
        for index, entry in enumerate(value):
            if not isinstance(entry, dict) or "name" not in entry or "template" not in entry:
                raise corrupt(f"entry [{index}] is {json_kind(entry)}, not an object with 'name' and 'template'")
            name, text = entry["name"], entry["template"]
            if not isinstance(name, str):
                raise corrupt(f"entry [{index}] has a 'name' that is {json_kind(name)}, not a string")
            if not isinstance(text, str):
                raise corrupt(f"entry [{index}] ({name!r}) has a 'template' that is {json_kind(text)}, not a string")
            templates[name] = text
        if not templates:
            raise corrupt("is an empty list")
        return templates
    if isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    raise corrupt(f"is {json_kind(value)}")


def special_tokens_from_config(config: Mapping[str, Any], path: Path) -> tuple[str | None, str | None, dict[str, str]]:
    """``(bos_token, eos_token, other special tokens)`` from a tokenizer config, as transformers
    passes them to templates (its ``special_tokens_map``).

    Each value may be a string or an added-token object (``{"__type": "AddedToken", "content": ...}``).
    Besides the named tokens (unk, sep, pad, cls, mask) transformers 5 also passes any other
    ``*_token`` key and the entries of an ``extra_special_tokens`` object (model-specific tokens
    like ``image_token``).

    >>> special_tokens_from_config({"bos_token": "<s>", "eos_token": {"__type": "AddedToken", "content": "</s>"},
    ...                             "image_token": "<image>", "add_bos_token": True}, Path("x"))
    ('<s>', '</s>', {'image_token': '<image>'})
    """
    tokens: dict[str, str] = {}
    for key in SPECIAL_TOKEN_NAMES:
        value = config.get(key)
        if value is None:
            continue
        content = _token_content(value, lenient=True)
        if content is None:
            raise CorruptSourceError(
                f"{path}: {key!r} is {json_kind(value)}; a special token must be a string or an object with a "
                "'content' string.",
                source=str(path),
                path=str(path),
            )
        tokens[key] = content
    for key, value in config.items():
        if key.endswith("_token") and key not in SPECIAL_TOKEN_NAMES:
            # Only real tokens count (transformers skips e.g. booleans like add_bos_token).
            content = _token_content(value, lenient=False)
            if content is not None:
                tokens[key] = content
    extra = config.get("extra_special_tokens") or config.get("additional_special_tokens")
    if isinstance(extra, dict):
        for key, value in extra.items():
            content = _token_content(value, lenient=False)
            if isinstance(key, str) and content is not None:
                tokens[key] = content
    bos = tokens.pop("bos_token", None)
    eos = tokens.pop("eos_token", None)
    return bos, eos, tokens


def _token_content(value: Any, *, lenient: bool) -> str | None:
    if isinstance(value, str):
        return value
    # Outside the named tokens transformers only recognises tagged added-token objects.
    if (
        isinstance(value, dict)
        and isinstance(value.get("content"), str)
        and (lenient or value.get("__type") == "AddedToken")
    ):
        return value["content"]
    return None


def _response_template(config: Mapping[str, Any], path: Path) -> dict[str, Any] | None:
    """transformers' ``response_template`` key, checked when it is used (``parse_response``)."""
    value = config.get("response_template")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CorruptSourceError(
            f"{path}: 'response_template' must be an object (a transformers response template), "
            f"got {type(value).__name__}", path=str(path),
        )
    return value


def _looks_like_tokenizer_config(data: Mapping[str, Any]) -> bool:
    markers = ("tokenizer_class", "added_tokens_decoder", "model_max_length", "extra_special_tokens")
    return any(key in data for key in markers) or any(key.endswith("_token") for key in data)


def _directory_hint(root: Path, has_config: bool) -> str | None:
    try:
        ggufs = sorted(p.name for p in root.glob("*.gguf"))[:3]
    except OSError:
        ggufs = []
    if ggufs:
        return f"The directory holds GGUF files, which carry their own template: load one of them ({', '.join(ggufs)})."
    if not has_config:
        return f"{root} has no {TOKENIZER_CONFIG_FILE}: is it a model directory?"
    return "The model may not be a chat model (base models usually ship no template)."


def _preview_keys(data: Mapping[str, Any]) -> str:
    keys = list(data)[:8]
    return ", ".join(repr(k) for k in keys) + (", ..." if len(data) > 8 else "") if keys else "none"


# -- saving ----------------------------------------------------------------------------------


def save_templates(template: ChatTemplate, directory: str | os.PathLike[str]) -> list[Path]:
    """Write ``template`` to ``directory`` as transformers 5 ``save_pretrained`` does.

    The ``default`` template goes to ``chat_template.jinja``, every other named template to
    ``additional_chat_templates/NAME.jinja``; the bytes are written unchanged (no newline
    translation). A ``chat_template`` key in an existing ``tokenizer_config.json`` is removed
    (the rest of the file is kept); no config is created when there is none. Template files left
    from an earlier save that are not part of ``template`` are removed, so the directory loads
    back (in chatplate and in transformers) as exactly ``template``. Returns the files written.

    Example::

        from chatplate import ChatTemplate
        save_templates(ChatTemplate({"default": "A", "tool_use": "B"}), "out")
        [PosixPath('out/chat_template.jinja'), PosixPath('out/additional_chat_templates/tool_use.jinja')]
    """
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise InputError(f"save: {root} exists and is not a directory")
    templates = dict(template.templates)
    extra_dir = root / CHAT_TEMPLATE_DIR
    for name in templates:
        if name != "default":
            _check_template_name(name, extra_dir)
    config_path = root / TOKENIZER_CONFIG_FILE
    # Parsed before anything is written, so a broken config leaves the directory untouched.
    config = read_json_object(config_path, str(root)) if config_path.is_file() else None

    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    jinja_path = root / CHAT_TEMPLATE_FILE
    if "default" in templates:
        _write_text(jinja_path, templates["default"])
        written.append(jinja_path)
    elif jinja_path.is_file():
        jinja_path.unlink()
    wanted = {f"{name}.jinja" for name in templates if name != "default"}
    if wanted:
        extra_dir.mkdir(exist_ok=True)
    for name, text in templates.items():
        if name != "default":
            target = extra_dir / f"{name}.jinja"
            _write_text(target, text)
            written.append(target)
    if extra_dir.is_dir():
        for stale in extra_dir.glob("*.jinja"):
            if stale.name not in wanted and stale.is_file():
                stale.unlink()
        if not any(extra_dir.iterdir()):
            extra_dir.rmdir()

    if config is not None and "chat_template" in config:
        del config["chat_template"]
        # Same layout transformers writes, but keys keep their order: the rest of the file is
        # the user's, so it should diff cleanly.
        _write_text(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")

    legacy = root / LEGACY_CHAT_TEMPLATE_FILE
    if legacy.is_file():
        warnings.warn(
            f"{legacy} (the legacy processor file) is still there: transformers' AutoProcessor prefers it over "
            f"{CHAT_TEMPLATE_FILE}, so a processor would load its template, not the one just saved. Delete it "
            "unless that is intended.",
            UserWarning,
            stacklevel=2,
        )
    return written


def _check_template_name(name: Any, extra_dir: Path) -> None:
    bad = (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or any(sep in name for sep in ("/", "\\", "\0", os.sep))
        or (extra_dir / f"{name}.jinja").resolve().parent != extra_dir.resolve()
    )
    if bad:
        raise InputError(
            f"save: cannot use {name!r} as a template name: it must be a plain file name "
            f"(no path separators), since it is saved as {CHAT_TEMPLATE_DIR}/NAME.jinja"
        )


def _write_text(path: Path, text: str) -> None:
    # Written beside the target and renamed over it, so an interrupted save never leaves a
    # half-written template or config behind.
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
