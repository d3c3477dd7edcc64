"""``ChatTemplate``: a compiled chat template and the render calls on it."""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from os import PathLike
from typing import TYPE_CHECKING, Any

from . import engine
from .errors import (
    ContinuationError,
    DocumentsError,
    Fix,
    InputError,
    TemplateNotFoundError,
    ToolSchemaError,
    UnusedVariableWarning,
)
from .limits import DEFAULT_LIMITS, Limits
from .messages import (
    REASONING_FIELDS,
    alias_reasoning,
    check_roles,
    plain_input,
    to_plain,
    validate_conversation,
    validate_documents,
)
from .tokens.encoding import BatchEncoding, Encoding
from .tokens.safety import Marking, mark, mark_messages, unescape_markers
from .tokens.tokenizer import ChatTokenizer
from .tools import to_tool_schemas

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ChatTemplate", "RenderResult"]

# Appended to the text being continued, then cut off again; the same tag as the reference, so
# templates that inspect the message see exactly what they would see there.
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "

Tool = Mapping[str, Any] | Callable[..., Any]
# Variables a caller may pass whether or not the template reads them: transformers passes the
# special-token map to every template.
_SPECIAL_TOKEN_VARIABLES = frozenset(
    ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
     "additional_special_tokens")
)
TokenizerLike = Any  # a tokenizer.json path, a model directory, a tokenizers.Tokenizer or a ChatTokenizer


@dataclass(frozen=True)
class RenderResult:
    """A rendered prompt and where its ``{% generation %}`` blocks landed.

    ``generation_spans`` are half-open ``(start, end)`` offsets into ``text``, one per generation
    block the template executed, exactly as transformers reports them.
    """

    text: str
    generation_spans: list[tuple[int, int]] = field(default_factory=list)


class ChatTemplate:
    """A chat template, compiled once, rendering conversations exactly as transformers does.

    ``source`` is the Jinja text, or a mapping of names to Jinja texts (named templates: the one
    called ``tool_use`` is picked when ``tools`` are given, ``default`` otherwise).

    >>> t = ChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}")
    >>> t.render([{"role": "user", "content": "Hi"}])
    '<user>Hi'
    """

    def __init__(
        self,
        source: str | Mapping[str, str],
        bos_token: str | None = None,
        eos_token: str | None = None,
        *,
        special_tokens: Mapping[str, str] | None = None,
        origin: str | None = None,
        tokenizer: TokenizerLike | None = None,
        limits: Limits | None = None,
        roles: Iterable[str] = (),
    ) -> None:
        if isinstance(source, str):
            templates = {"default": source}
        elif isinstance(source, Mapping) and source:
            templates = dict(source)
        else:
            raise InputError(
                f"ChatTemplate: expected the template text or a mapping of names to template texts, "
                f"got {type(source).__name__}"
            )
        for name, text in templates.items():
            if not isinstance(text, str):
                raise InputError(f"ChatTemplate: template {name!r} must be a string, got {type(text).__name__}")
            if not text.strip():
                raise InputError(
                    f"ChatTemplate: template {name!r} is empty; pass the Jinja text of a chat template"
                    if len(templates) > 1 else "ChatTemplate(source): the source is an empty string; pass the Jinja "
                    "text of a chat template (or use chatplate.load for files, model directories and built-ins)"
                )
        self.templates: dict[str, str] = templates
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.special_tokens: dict[str, str] = to_plain(dict(special_tokens or {}))
        self.origin = origin
        self.limits = _check_limits(limits) if limits is not None else DEFAULT_LIMITS
        # Roles beyond the standard ones that this template turns into control tokens.
        self.roles: frozenset[str] = frozenset(roles)
        self._compiled = {
            name: engine.compile_template(text, self._label(name)) for name, text in templates.items()
        }
        self._tokenizer_source = tokenizer
        self._tokenizer: ChatTokenizer | None = tokenizer if isinstance(tokenizer, ChatTokenizer) else None
        # Per named template: (names accepted silently, names the template reads); filled lazily
        # and rebuilt after unpickling (__reduce__ goes through __init__).
        self._read_names: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._warned_unused: set[str] = set()

    def __reduce__(self) -> tuple[Any, ...]:
        # Compiled templates do not pickle: worker processes get the sources and compile them
        # again (cached by source there), with the tokenizer as it is (loaded or not).
        return (
            _rebuild_template,
            (self.templates, self.bos_token, self.eos_token, self.special_tokens, self.origin,
             self._tokenizer if self._tokenizer is not None else self._tokenizer_source, self.limits, self.roles),
        )

    @property
    def tokenizer(self) -> ChatTokenizer:
        """The attached tokenizer, loaded on first use (rendering never needs it)."""
        if self._tokenizer is None:
            self._tokenizer = _load_tokenizer(self._tokenizer_source, self.origin)
        return self._tokenizer

    @property
    def has_tokenizer(self) -> bool:
        """Whether a tokenizer is attached (loaded or still to load), as ``encode`` needs.

        >>> ChatTemplate("{{ messages[0].content }}").has_tokenizer
        False
        """
        return self._tokenizer is not None or self._tokenizer_source is not None

    @property
    def source(self) -> str:
        """The Jinja text used when no tools are given (the ``default`` template)."""
        return self.templates[self._pick(None)]

    def __repr__(self) -> str:
        names = ", ".join(self.templates)
        origin = f", origin={self.origin!r}" if self.origin else ""
        return f"ChatTemplate(templates=[{names}]{origin})"

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Tool] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        now: datetime | None = None,
        limits: Limits | None = None,
        **variables: Any,
    ) -> str:
        """Render ``messages`` to the prompt string, byte for byte as transformers'
        ``apply_chat_template(..., tokenize=False)`` would.

        ``continue_final_message`` leaves the last message open (``True`` continues ``content``;
        a string names the field, e.g. ``"reasoning_content"``). ``now`` fixes the time
        ``strftime_now`` reports. Extra keyword arguments become template variables and override
        ``bos_token``/``eos_token``.

        >>> t = ChatTemplate("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}", bos_token="<s>")
        >>> t.render([{"role": "user", "content": "Hi"}])
        '<s>Hi'
        """
        if variables:
            self._warn_unused(tools, variables.keys(), "render")
        return self._render_prepared(self._prepare(
            messages, tools, documents, add_generation_prompt, continue_final_message, now, variables, False, None, limits,
        )).text

    def render_spans(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Tool] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        now: datetime | None = None,
        limits: Limits | None = None,
        **variables: Any,
    ) -> RenderResult:
        """Like :meth:`render`, also returning the ``{% generation %}`` spans.

        >>> t = ChatTemplate("{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}")
        >>> t.render_spans([{"role": "assistant", "content": "Hi"}]).generation_spans
        [(0, 2)]
        """
        if variables:
            self._warn_unused(tools, variables.keys(), "render_spans")
        return self._render_prepared(self._prepare(
            messages, tools, documents, add_generation_prompt, continue_final_message, now, variables, True, None, limits,
        ))

    def encode(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Tool] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        now: datetime | None = None,
        sanitize_control_tokens: bool = True,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_offsets: bool = False,
        return_assistant_mask: bool = False,
        train_roles: Sequence[str] | None = None,
        train_end_of_turn: bool = True,
        train_last_turn_only: bool = False,
        limits: Limits | None = None,
        **variables: Any,
    ) -> Encoding:
        """Render and encode one conversation with the attached tokenizer.

        The ids equal transformers' ``apply_chat_template(..., tokenize=True)`` (the rendered text
        encoded without adding special tokens); with ``sanitize_control_tokens`` (the default) a
        control token inside message data, tools, documents or variables is encoded as text.
        ``truncation=True`` keeps the first ``max_length`` tokens; ``truncation="turns"`` drops
        the oldest whole turns instead, never the system prompt, the last user turn or the
        generation prompt. ``return_offsets`` adds ``(start, end)`` characters per token.

        ``return_assistant_mask`` adds ``enc.assistant_mask`` (1 for each token the model is
        trained to produce) and ``enc.labels`` (those ids, -100 elsewhere), from the template's
        ``{% generation %}`` blocks or, without them, derived for any template: a turn's text
        after the generation prompt through its end-of-turn marker. ``train_roles`` (default
        the assistant), ``train_end_of_turn`` (default yes) and ``train_last_turn_only`` choose
        what is trained; a message with ``"train": False`` is never trained.

            enc = load("model-dir").encode(messages, add_generation_prompt=True)
            enc.input_ids[:3], enc.text[:20]
            enc = load("model-dir").encode(chat, return_assistant_mask=True)
            enc.labels[:5]
        """
        from .tokens.encoder import encode_conversations

        if variables:
            self._warn_unused(tools, variables.keys(), "encode")
        [encoding] = encode_conversations(
            self,
            self.tokenizer,
            [messages],
            render_kwargs=_render_kwargs(tools, documents, add_generation_prompt, continue_final_message, now, variables, limits),
            sanitize_control_tokens=sanitize_control_tokens,
            truncation=truncation,
            max_length=max_length,
            return_offsets=return_offsets,
            masks=_mask_options(return_assistant_mask, train_roles, train_end_of_turn, train_last_turn_only),
        )
        return encoding

    def encode_batch(
        self,
        conversations: Sequence[Sequence[Mapping[str, Any]]],
        *,
        tools: Sequence[Tool] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        now: datetime | None = None,
        sanitize_control_tokens: bool = True,
        padding: bool | str = False,
        padding_side: str | None = None,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_offsets: bool = False,
        return_assistant_mask: bool = False,
        train_roles: Sequence[str] | None = None,
        train_end_of_turn: bool = True,
        train_last_turn_only: bool = False,
        limits: Limits | None = None,
        **variables: Any,
    ) -> BatchEncoding:
        """Encode many conversations; the tokenizer runs once for the batch, on its own threads.

        ``padding`` is ``False``, ``True``/``"longest"`` or ``"max_length"``; ``return_tensors``
        ``"np"`` or ``"pt"`` gives arrays (numpy/torch needed only then). With
        ``return_assistant_mask`` (options as in :meth:`encode`) the batch also holds
        ``assistant_masks`` and ``labels``, padded with 0 and -100.

            batch = t.encode_batch(chats, padding=True, return_tensors="np")
            batch["input_ids"].shape
        """
        from .tokens.encoder import batch_from, encode_conversations

        if variables:
            self._warn_unused(tools, variables.keys(), "encode_batch")
        encodings = encode_conversations(
            self,
            self.tokenizer,
            list(conversations),
            render_kwargs=_render_kwargs(tools, documents, add_generation_prompt, continue_final_message, now, variables, limits),
            sanitize_control_tokens=sanitize_control_tokens,
            truncation=truncation,
            max_length=max_length,
            return_offsets=return_offsets,
            masks=_mask_options(return_assistant_mask, train_roles, train_end_of_turn, train_last_turn_only),
        )
        return batch_from(
            encodings,
            self.tokenizer,
            padding=padding,  # type: ignore[arg-type]
            max_length=max_length,
            padding_side=padding_side,
            return_tensors=return_tensors,
        )

    def apply_chat_template(
        self,
        conversation: Any,
        tools: Sequence[Tool] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        tokenize: bool = True,
        sanitize_control_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_dict: bool = True,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
        return_assistant_tokens_mask: bool = False,
        **kwargs: Any,
    ) -> Any:
        """transformers' ``tokenizer.apply_chat_template``, same keywords and return shapes:
        a string (``tokenize=False``), ids, or a dict with ``input_ids`` and ``attention_mask``;
        a list of conversations gives a batch. Only ``sanitize_control_tokens`` defaults to
        ``True`` here: identical output unless data smuggles in control tokens.

            t.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        """
        template = self
        if chat_template is not None:
            text = self.templates.get(chat_template, chat_template)
            template = ChatTemplate(
                text, self.bos_token, self.eos_token, special_tokens=self.special_tokens, origin=self.origin,
                tokenizer=self._tokenizer or self._tokenizer_source,
            )
        if kwargs:
            # Warn here so the warning points at the caller; the call below finds it already given.
            # Keywords the method below takes as parameters are not template variables.
            consumed = _keyword_parameters("encode_batch" if tokenize else "render")
            template._warn_unused(tools, kwargs.keys() - consumed, "apply_chat_template")
        batched = isinstance(conversation, (list, tuple)) and bool(conversation) and isinstance(conversation[0], (list, tuple))
        conversations = list(conversation) if batched else [conversation]
        common = dict(
            tools=tools,
            documents=documents,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            **kwargs,
        )
        if not tokenize:
            texts = [template.render(c, **common) for c in conversations]
            return texts if batched else texts[0]
        if return_assistant_tokens_mask and not return_dict:
            raise InputError("return_assistant_tokens_mask=True needs return_dict=True (and tokenize=True)")
        extra = dict(tokenizer_kwargs or {})
        padding_side = extra.pop("padding_side", None)
        if extra:
            raise InputError(f"tokenizer_kwargs: unsupported keys {sorted(extra)}")
        batch = template.encode_batch(
            conversations,
            sanitize_control_tokens=sanitize_control_tokens,
            padding=padding,
            padding_side=padding_side,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
            return_assistant_mask=return_assistant_tokens_mask,
            **common,
        )
        if not batched and return_tensors is None:
            batch = BatchEncoding({k: v[0] for k, v in batch.items()}, batch.encodings)
        return batch if return_dict else batch["input_ids"]

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        """Turn token ids back into text with the attached tokenizer, as transformers'
        ``tokenizer.decode(ids, skip_special_tokens=...)`` does (see :meth:`ChatTokenizer.decode`).

        ``ids`` is one sequence: a list or tuple of ints, or a 1-D numpy array or torch tensor.

            t = load("model-dir")
            t.decode(t.encode(messages).input_ids, skip_special_tokens=True)
        """
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def _render_marked(self, conversation: Any, render_kwargs: dict[str, Any], marker: Marking | None) -> str:
        """Render for encoding: control tokens in the data carry markers when ``marker`` is set."""
        return self._render_prepared(self._prepare(conversation, **render_kwargs, with_spans=False, marker=marker)).text

    def save(self, directory: str | PathLike[str]) -> list[Path]:
        """Write the templates as transformers 5 does (``chat_template.jinja`` and
        ``additional_chat_templates/NAME.jinja``), keeping the rest of ``tokenizer_config.json``.

        ChatTemplate("{{ messages[0].content }}").save("my-model")
        [PosixPath('my-model/chat_template.jinja')]
        """
        from .sources.model_dir import save_templates

        return save_templates(self, directory)

    # -- internals -------------------------------------------------------------------------

    def _label(self, name: str) -> str:
        label = self.origin or "chat template"
        return label if len(self.templates) == 1 else f"{label} [{name}]"

    def _pick(self, tools: Any) -> str:
        if tools is not None and "tool_use" in self.templates:
            return "tool_use"
        if "default" in self.templates:
            return "default"
        raise TemplateNotFoundError(
            "this model has several chat templates and none is called 'default': choose one with "
            f"{{fix}}; available: {sorted(self.templates)}",
            fix=Fix("chatplate.load(source, name=...)", "--name NAME"),
            source=self.origin,
            looked_for=sorted(self.templates),
        )

    def _warn_unused(self, tools: Any, names: AbstractSet[str], method: str) -> None:
        """Warn once per name about extra keywords the template picked for ``tools`` never reads.

        Called directly by each public method, so ``stacklevel=3`` is the caller of that method.
        """
        try:
            name = self._pick(tools)
        except TemplateNotFoundError:
            return  # the render itself raises this, in its own order
        known = self._read_names.get(name)
        if known is None:
            known = self._read_names[name] = self._template_reads(name)
        accepted, reads = known
        unread = names - accepted
        if not unread or not (unread := unread - self._warned_unused):
            return
        self._warned_unused |= unread
        candidates = sorted(reads | _keyword_parameters(method))
        for keyword in sorted(unread):
            match = difflib.get_close_matches(keyword, candidates, n=1)
            hint = f"; did you mean {match[0]!r}? It is ignored." if match else "; it is ignored."
            warnings.warn(
                f"keyword {keyword!r} is not read by the template ({self._label(name)}){hint}",
                UnusedVariableWarning,
                stacklevel=3,
            )

    def _template_reads(self, name: str) -> tuple[frozenset[str], frozenset[str]]:
        reads = engine.read_variables(self.templates[name])
        return reads | _SPECIAL_TOKEN_VARIABLES | frozenset(self.special_tokens), reads

    def _variables(self, variables: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = dict(self.special_tokens)
        if self.bos_token is not None:
            merged["bos_token"] = self.bos_token
        if self.eos_token is not None:
            merged["eos_token"] = self.eos_token
        merged.update(variables)
        return merged

    def _prepare(
        self,
        messages: Any,
        tools: Any,
        documents: Any,
        add_generation_prompt: bool,
        continue_final_message: bool | str,
        now: datetime | None,
        variables: dict[str, Any],
        with_spans: bool,
        marker: Marking | None = None,
        limits: Limits | None = None,
    ) -> _Prepared:
        """Validate, then normalise (and mark) the input of a render: done once, rendered as
        often as needed (derived masks render every prefix of the same conversation)."""
        # Validate, then normalise, then render: the same steps, in the same order, as the
        # reference, so the same inputs fail and the same inputs render.
        limits = self.limits if limits is None else _check_limits(limits)
        name = self._pick(tools)
        # One budget for the input's size; each render has its own for its work and output.
        budget = engine.Budget(limits, now)
        chat = validate_conversation(messages, limits, budget)
        if continue_final_message and add_generation_prompt:
            raise InputError(
                "continue_final_message and add_generation_prompt cannot be used together: continue the "
                "final message, or add a prompt for a new assistant message, not both"
            )
        if continue_final_message and with_spans:
            raise InputError("continue_final_message cannot be combined with generation spans")
        if now is not None and not isinstance(now, datetime):
            raise InputError(f"now: expected a datetime.datetime, got {type(now).__name__}")
        tool_schemas = to_tool_schemas(tools)
        validate_documents(documents)
        tool_schemas = plain_input(tool_schemas, "tools", budget, ToolSchemaError)
        documents = plain_input(documents, "documents", budget, DocumentsError)
        variables = plain_input(variables, "variables", budget)
        if marker is not None:
            # Control tokens in the data (not in the template's own special-token variables)
            # are marked so the encoder can encode them as text.
            check_roles(chat, marker.data.control, self.roles)
            chat = mark_messages(chat, marker)
            tool_schemas, documents, variables = (
                mark(tool_schemas, marker.data), mark(documents, marker.data), mark(variables, marker.data)
            )
        template_vars = self._variables(variables)
        template_vars["tools"] = tool_schemas
        template_vars["documents"] = documents
        chat = alias_reasoning(chat)
        continued = _open_final_message(chat, continue_final_message, self.templates[name]) if continue_final_message else None
        return _Prepared(
            name, chat, template_vars, limits, now, marker is not None, continued, add_generation_prompt, with_spans
        )

    def _render_prepared(
        self,
        prepared: _Prepared,
        chat: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool | None = None,
        with_spans: bool | None = None,
    ) -> RenderResult:
        """Render prepared input, as it was prepared or with a prefix of its conversation
        (``chat``) and other settings (derived masks render every prefix)."""
        chat = prepared.chat if chat is None else chat
        add_generation_prompt = prepared.add_generation_prompt if add_generation_prompt is None else add_generation_prompt
        with_spans = prepared.with_spans if with_spans is None else with_spans
        template_vars = dict(prepared.variables)
        template_vars["messages"] = chat
        template_vars["add_generation_prompt"] = add_generation_prompt
        budget = engine.Budget(prepared.limits, prepared.now)
        compiled = self._compiled[prepared.name]
        try:
            if with_spans:
                text, spans = engine.render_with_spans(compiled, template_vars, budget)
            else:
                text, spans = engine.render(compiled, template_vars, budget), []
        except Exception as exc:  # noqa: BLE001 - the choke point: everything a template raises
            raise engine.translate_runtime_error(exc, self._label(prepared.name)) from exc

        if prepared.marked:
            text, spans = unescape_markers(text, spans)
        if prepared.continued is not None and chat is prepared.chat:
            text = _close_final_message(text, prepared.continued)
        return RenderResult(text, spans)


@functools.cache
def _keyword_parameters(method: str) -> frozenset[str]:
    """The named keyword parameters of a ``ChatTemplate`` method (never template variables)."""
    parameters = inspect.signature(getattr(ChatTemplate, method)).parameters.values()
    return frozenset(
        p.name for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "messages", "conversation", "conversations")
    )


@dataclass(frozen=True)
class _Prepared:
    """A render's input, validated, normalised and (for encoding) marked."""

    name: str
    chat: list[dict[str, Any]]
    variables: dict[str, Any]
    limits: Limits
    now: datetime | None
    marked: bool
    continued: Any
    add_generation_prompt: bool
    with_spans: bool


def _render_kwargs(
    tools: Any, documents: Any, add_generation_prompt: bool, continue_final_message: bool | str, now: Any,
    variables: dict[str, Any], limits: Limits | None = None,
) -> dict[str, Any]:
    """The render arguments an encode call carries to ``_render`` for each conversation."""
    return dict(
        tools=tools,
        documents=documents,
        add_generation_prompt=add_generation_prompt,
        continue_final_message=continue_final_message,
        now=now,
        variables=variables,
        limits=limits,
    )


def _rebuild_template(
    templates: dict[str, str], bos_token: Any, eos_token: Any, special_tokens: dict[str, str], origin: Any, tokenizer: Any,
    limits: Limits, roles: frozenset[str],
) -> ChatTemplate:
    return ChatTemplate(
        templates, bos_token, eos_token, special_tokens=special_tokens, origin=origin, tokenizer=tokenizer, limits=limits,
        roles=roles,
    )


def _check_limits(limits: Any) -> Limits:
    if not isinstance(limits, Limits):
        raise InputError(f"limits: expected a chatplate.Limits, got {type(limits).__name__}")
    return limits


def _mask_options(wanted: bool, roles: Any, end_of_turn: bool, last_turn_only: bool) -> Any:
    if not wanted:
        return None
    from .training.masks import MaskOptions

    return MaskOptions.from_arguments(roles, end_of_turn, last_turn_only, None)


def _load_tokenizer(source: Any, origin: str | None) -> ChatTokenizer:
    if source is None:
        raise InputError(
            f"{origin or 'this template'} has no tokenizer: {{fix}}",
            fix=Fix(
                "load a model directory with a tokenizer.json (chatplate.load('path/to/model')) or give one: "
                "chatplate.load(source, tokenizer='tokenizer.json')",
                "give a model directory with a tokenizer.json (--model path/to/model) or add --tokenizer "
                "tokenizer.json (a file or a model directory)",
            ),
        )
    if isinstance(source, ChatTokenizer):
        return source
    if isinstance(source, (str, PathLike)):
        from pathlib import Path as _Path

        path = _Path(source)
        return ChatTokenizer.from_model_dir(path) if path.is_dir() else ChatTokenizer.from_file(path)
    if type(source).__module__.startswith("tokenizers"):
        return ChatTokenizer(source)
    raise InputError(
        f"tokenizer: expected a tokenizer.json path, a model directory or a tokenizers.Tokenizer, "
        f"got {type(source).__name__}"
    )


def _open_final_message(chat: list[Any], continue_final_message: bool | str, source: str) -> str:
    """Tag the text to continue (in place) and return that text, as the reference does."""
    field_name = continue_final_message if isinstance(continue_final_message, str) else "content"
    final = chat[-1]
    value = final.get(field_name)
    if value is None:
        raise ContinuationError(
            f"continue_final_message: the final message has no {field_name!r} to continue",
            field=field_name,
        )
    fields = [field_name]
    if field_name in REASONING_FIELDS:
        # Reasoning is copied under several names; tag every copy, accept whichever the template reads.
        fields = [name for name in REASONING_FIELDS if final.get(name) == value]
    if not any(name in source for name in fields):
        raise ContinuationError(
            f"continue_final_message: the template never reads the field {field_name!r}, so it cannot be continued",
            field=field_name,
        )
    try:
        if isinstance(value, (list, tuple)):
            for part in reversed(value):
                if "text" in part:
                    text = part["text"]
                    part["text"] = part["text"] + _CONTINUE_TAG
                    return text
            raise ContinuationError(
                "continue_final_message: the final message has no text part to continue", field=field_name
            )
        for name in fields:
            final[name] = final[name] + _CONTINUE_TAG
    except (TypeError, KeyError) as exc:
        raise ContinuationError(
            f"continue_final_message: cannot append to the final message's {field_name!r}: {exc}", field=field_name
        ) from exc
    return value


def _close_final_message(text: str, continued: Any) -> str:
    tag = _CONTINUE_TAG.strip()
    try:
        present = continued.strip() in text and tag in text
    except (AttributeError, TypeError) as exc:
        raise ContinuationError(f"continue_final_message: the text to continue is not a string: {exc}") from exc
    if not present:
        raise ContinuationError(
            "continue_final_message: the final message does not appear in the rendered prompt; this template "
            "drops or rewrites part of it, so it cannot be continued"
        )
    cut = text.rindex(tag)
    if text[cut : cut + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
        return text[:cut]
    # The template trimmed the space after the tag, so it trims the message's trailing spacing too.
    return text[:cut].rstrip()
