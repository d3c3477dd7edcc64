"""Where chat templates come from: files, model directories, GGUF files, the hub, built-ins.

``load`` is the one entry point (re-exported as ``chatplate.load``). It resolves a source in
this order:

1. a ``ChatTemplate`` (returned as is) or a mapping of names to template texts;
2. a string that is itself a Jinja template (it contains ``{%`` or ``{{``);
3. an existing path: a directory is read as a model directory (exactly as transformers reads
   one), a ``.gguf`` file (or any file starting with the GGUF magic) through its metadata, a
   ``.json`` file as a ``tokenizer_config.json``/``chat_template.json``, any other file as the
   template text;
4. a built-in template name (``"chatml"``, ...);
5. a hub id ``org/name`` (optionally at ``revision=``), fetched through ``huggingface_hub``.

Readers return a :class:`Found` (templates, special tokens, what was searched); ``load`` turns it
into a :class:`~chatplate.template.ChatTemplate`, or applies ``fallback=`` when a source was found
but holds no template.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ..errors import DefaultTemplateWarning, Fix, InputError, SourceError, TemplateNotFoundError, UnknownBuiltinError

if TYPE_CHECKING:
    from ..template import ChatTemplate

__all__ = ["load", "save_templates", "Found"]

SourceLike = Union[str, "os.PathLike[str]", Mapping[str, str], "ChatTemplate"]

# Repo ids as the hub accepts them: "org/name", each part of letters, digits, "-", "_", "." and
# at most 96 characters in all. A bare name is never sent to the hub: it is a built-in or a typo.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9_.\-]+$")

# Suffixes that say "this was meant as a file", so a missing one is reported as a missing file
# rather than as an unknown built-in or an unknown hub repo.
_FILE_SUFFIXES = (".jinja", ".j2", ".json", ".gguf", ".txt", ".jinja2")


@dataclass
class Found:
    """What a reader found in a source: the templates and the special tokens beside them.

    ``templates`` is empty when the source exists but holds no chat template; ``looked_for``
    then lists every place that was searched and ``hint`` may add advice.
    """

    templates: dict[str, str]
    origin: str
    bos_token: str | None = None
    eos_token: str | None = None
    special_tokens: dict[str, str] = field(default_factory=dict)
    looked_for: list[str] = field(default_factory=list)
    hint: str | None = None
    source: str | None = None
    # Where the tokenizer lives (a model directory or a tokenizer.json), loaded only to encode.
    tokenizer: str | None = None
    # transformers' response_template (tokenizer_config.json): how to parse generated text.
    response_template: dict[str, Any] | None = None


# The readers build `Found`, so they are imported once it exists.
from .model_dir import save_templates  # noqa: E402


def load(
    source: SourceLike,
    *,
    name: str | None = None,
    revision: str | None = None,
    fallback: str | ChatTemplate | None = None,
    tokenizer: Any = None,
) -> ChatTemplate:
    """Load a chat template from a template string, file, model directory, GGUF file, built-in
    name or hub id.

    ``name`` picks one of several named templates (``"tool_use"``, ``"rag"``, ...). ``revision``
    is a hub branch, tag or commit. ``fallback`` (a built-in name such as ``"chatml"``, or a
    ``ChatTemplate``) is used, with a :class:`DefaultTemplateWarning`, when the source exists but
    has no chat template. ``tokenizer`` (a ``tokenizer.json``, a model directory or a
    ``tokenizers.Tokenizer``) replaces the source's own, or gives one to a template that has none.

    >>> t = load("{% for m in messages %}{{ m.content }}{% endfor %}")
    >>> t.render([{"role": "user", "content": "Hi"}])
    'Hi'

    Other sources, for example::

        load("path/to/model-dir")
        load("model.gguf")
        load("Qwen/Qwen2.5-0.5B-Instruct", name="tool_use")
        load("chatml", tokenizer="path/to/tokenizer.json")
    """
    template = _load(source, name, revision, fallback)
    return template if tokenizer is None else _with_tokenizer(template, tokenizer)


def _load(source: SourceLike, name: str | None, revision: str | None, fallback: Any) -> ChatTemplate:
    from ..template import ChatTemplate

    if revision is not None and not isinstance(revision, str):
        raise InputError(f"load(revision=...): expected a string, got {type(revision).__name__}")
    fallback_template = _resolve_fallback(fallback)

    if isinstance(source, ChatTemplate):
        _no_revision(revision, "a ChatTemplate")
        return _select(source, name) if name is not None else source
    if isinstance(source, Mapping):
        _no_revision(revision, "a mapping of templates")
        return _build(Found(templates=dict(source), origin="templates given as a mapping"), name)
    if isinstance(source, os.PathLike):
        _no_revision(revision, "a path")
        path = Path(source)
        if not _exists(path):
            raise _missing_path(path)
        return _finish(_read_path(path), name, fallback_template)
    if not isinstance(source, str):
        raise InputError(
            "load(source): expected a template string, a path, a built-in name or a hub id, "
            f"got {type(source).__name__}"
        )

    if not source.strip():
        raise InputError("{fix}: the source is an empty string", fix=Fix("load(source)", "--template/--model"))
    if _looks_like_jinja(source):
        _no_revision(revision, "a template string")
        return _build(Found(templates={"default": source}, origin="template string"), name)

    path = Path(os.path.expanduser(source))
    if _exists(path):
        _no_revision(revision, "a local path")
        return _finish(_read_path(path), name, fallback_template)

    try:
        builtin = _builtin(source)
    except UnknownBuiltinError as exc:
        unknown = exc
    else:
        _no_revision(revision, "a built-in template")
        return _build(builtin, name)

    if _HUB_ID.match(source) and len(source) <= 96 and ".." not in source and "--" not in source:
        from .hub import read_hub

        try:
            found = read_hub(source, revision=revision)
        except SourceError as exc:
            # "org/name" is also how a relative path looks: say first that there is no such path.
            extra = {"looked_for": [str(path.absolute()), *(exc.looked_for or [])]} if isinstance(exc, TemplateNotFoundError) else {}
            raise exc.prefixed(
                f"{source}: no such local file or directory ({path.absolute()}); tried as a hub id instead: ", **extra
            ) from exc
        return _finish(found, name, fallback_template)

    if source.endswith(_FILE_SUFFIXES) or os.sep in source or source.startswith((".", "~")):
        raise _missing_path(path)
    raise UnknownBuiltinError(
        f"{source!r} is not an existing file or directory, a hub id (org/name) or a template; as a built-in "
        f"name: {unknown.message}",
        source=source,
        looked_for=unknown.looked_for,
        suggestions=getattr(unknown, "suggestions", None),
    )


def _with_tokenizer(template: ChatTemplate, tokenizer: Any) -> ChatTemplate:
    from ..template import ChatTemplate

    return ChatTemplate(
        template.templates, template.bos_token, template.eos_token, special_tokens=template.special_tokens,
        origin=template.origin, tokenizer=tokenizer, limits=template.limits, roles=template.roles,
        response_template=template.response_template,
    )


def _read_path(path: Path) -> Found:
    from . import model_dir

    if path.is_dir():
        return model_dir.read_model_dir(path)
    if path.suffix.lower() == ".gguf" or _has_gguf_magic(path):
        from .gguf import read_gguf

        return read_gguf(path)
    if path.suffix.lower() == ".json":
        return model_dir.read_json_file(path)
    return model_dir.read_template_file(path)


def _has_gguf_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"GGUF"
    except OSError:
        return False


def _exists(path: Path) -> bool:
    # Arbitrary strings reach here (a typo'd built-in name, a long template without tags):
    # a name too long for the file system is simply not a path.
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _looks_like_jinja(text: str) -> bool:
    return "{%" in text or "{{" in text


def _no_revision(revision: str | None, what: str) -> None:
    if revision is not None:
        raise InputError(
            f"{{fix}}: a revision only applies to hub ids (org/name), not to {what}",
            fix=Fix(f"load(revision={revision!r})", f"--revision {revision}"),
        )


def _missing_path(path: Path) -> TemplateNotFoundError:
    shown = str(path)
    return TemplateNotFoundError(
        f"{shown}: no such file or directory. Give the path to a model directory, a tokenizer_config.json, "
        "a .jinja or a .gguf file; a built-in name (e.g. 'chatml'); or a hub id (org/name).",
        source=shown,
        looked_for=[str(path.absolute())],
    )


# -- built-ins -------------------------------------------------------------------------------


def _builtin(name: str) -> Found:
    from .registry import get_builtin

    builtin = get_builtin(name)
    template = builtin.template
    templates = dict(template) if isinstance(template, Mapping) else {"default": template}
    return Found(
        templates=templates,
        origin=f"built-in template {builtin.name!r}",
        bos_token=builtin.bos_token,
        eos_token=builtin.eos_token,
        source=name,
    )


def _resolve_fallback(fallback: Any) -> Found | None:
    from ..template import ChatTemplate

    if fallback is None:
        return None
    if isinstance(fallback, ChatTemplate):
        return Found(
            templates=dict(fallback.templates),
            origin=fallback.origin or "fallback template",
            bos_token=fallback.bos_token,
            eos_token=fallback.eos_token,
            special_tokens=dict(fallback.special_tokens),
        )
    if isinstance(fallback, str):
        # Resolved up front so a misspelt fallback fails now, not on the day a model lacks a template.
        return _builtin(fallback)
    raise InputError(f"load(fallback=...): expected a built-in name or a ChatTemplate, got {type(fallback).__name__}")


# -- building --------------------------------------------------------------------------------


def _finish(found: Found, name: str | None, fallback: Found | None) -> ChatTemplate:
    if found.templates:
        return _build(found, name)
    if fallback is None:
        raise _not_found(found)
    missing = ", ".join(found.looked_for) or "a chat template"
    warnings.warn(
        f"{found.origin} has no chat template (looked for {missing}); using {fallback.origin} instead. "
        "The prompt may not match what the model was trained on.",
        DefaultTemplateWarning,
        stacklevel=3,
    )
    # The model's own special tokens win over the fallback's: the old transformers default
    # template was rendered with the tokenizer's tokens too.
    merged = Found(
        templates=fallback.templates,
        origin=f"{fallback.origin} (fallback: {found.origin} has no chat template)",
        bos_token=found.bos_token if found.bos_token is not None else fallback.bos_token,
        eos_token=found.eos_token if found.eos_token is not None else fallback.eos_token,
        special_tokens={**fallback.special_tokens, **found.special_tokens},
        tokenizer=found.tokenizer,
    )
    return _build(merged, name)


def _not_found(found: Found) -> TemplateNotFoundError:
    looked = "".join(f"\n  - {place}" for place in found.looked_for)
    hint = f"\n{found.hint}" if found.hint else ""
    return TemplateNotFoundError(
        f"{found.origin} has no chat template. Looked for:{looked}{hint}\n"
        "To render with a known layout instead, {fix}.",
        fix=Fix(
            "name one: chatplate.load('chatml'), or keep this source and add fallback='chatml' to chatplate.load",
            "name one with --template chatml, or keep this source and add --fallback chatml",
        ),
        source=found.source or found.origin,
        looked_for=list(found.looked_for),
    )


def _build(found: Found, name: str | None) -> ChatTemplate:
    from ..template import ChatTemplate

    templates = found.templates
    if name is not None:
        templates = {"default": _pick_named(templates, name, found.origin, found.source)}
    source: str | dict[str, str]
    # A lone "default" stays a plain string, as transformers flattens it.
    source = templates["default"] if list(templates) == ["default"] else templates
    return ChatTemplate(
        source,
        found.bos_token,
        found.eos_token,
        special_tokens=found.special_tokens,
        origin=found.origin if name is None else f"{found.origin} [{name}]",
        tokenizer=found.tokenizer,
        response_template=found.response_template,
    )


def _select(template: ChatTemplate, name: str) -> ChatTemplate:
    from ..template import ChatTemplate

    text = _pick_named(template.templates, name, template.origin or "the template", template.origin)
    origin = f"{template.origin} [{name}]" if template.origin else None
    return ChatTemplate(
        text, template.bos_token, template.eos_token, special_tokens=template.special_tokens, origin=origin,
        response_template=template.response_template,
    )


def _pick_named(templates: Mapping[str, str], name: str, origin: str, source: str | None) -> str:
    if name in templates:
        return templates[name]
    raise TemplateNotFoundError(
        f"{origin} has no chat template named {name!r}; available: {', '.join(sorted(templates)) or 'none'}. "
        "{fix}",
        fix=Fix("Pass one of those as name=, or leave name= out to use the default.",
                "Pass one of those with --name, or leave --name out to use the default."),
        source=source or origin,
        looked_for=[name],
    )
