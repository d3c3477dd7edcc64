"""Rendering: a conversation validated, normalised (and, for encoding, marked) once, then
rendered by a compiled template, whole or as prefixes of it.

This is the layer between the engine and the message checks below and tokens and training
above: :mod:`chatplate.tokens` and :mod:`chatplate.training` take a :class:`Renderer`, and
:class:`~chatplate.ChatTemplate` is the façade over all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from . import engine
from .errors import (
    ChatplateError,
    ContinuationError,
    DocumentsError,
    Fix,
    InputError,
    TemplateNotFoundError,
    ToolSchemaError,
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
from .safety import Marking, mark, mark_messages, unescape_markers
from .tools import to_tool_schemas

__all__ = ["PrefixRenders", "RenderResult", "Prepared", "Renderer", "render_kwargs", "check_limits"]

_Out = TypeVar("_Out")

# Appended to the text being continued, then cut off again; the same tag as the reference, so
# templates that inspect the message see exactly what they would see there.
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


@dataclass(frozen=True)
class RenderResult:
    """A rendered prompt and where its ``{% generation %}`` blocks landed.

    ``generation_spans`` are half-open ``(start, end)`` offsets into ``text``, one per generation
    block the template executed, exactly as transformers reports them.
    """

    text: str
    generation_spans: list[tuple[int, int]] = field(default_factory=list)


class Renderer:
    """Compiled templates and what they render with (special tokens, limits, extra roles).

    >>> r = Renderer({"default": "{% for m in messages %}{{ m.content }}{% endfor %}"})
    >>> r.render(r.prepare([{"role": "user", "content": "Hi"}])).text
    'Hi'
    """

    def __init__(
        self,
        templates: Mapping[str, str],
        bos_token: str | None = None,
        eos_token: str | None = None,
        special_tokens: Mapping[str, str] | None = None,
        origin: str | None = None,
        limits: Limits | None = None,
        roles: frozenset[str] = frozenset(),
    ) -> None:
        self.templates = dict(templates)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.special_tokens: dict[str, str] = to_plain(dict(special_tokens or {}))
        self.origin = origin
        self.limits = check_limits(limits) if limits is not None else DEFAULT_LIMITS
        # Roles beyond the standard ones that this template turns into control tokens.
        self.roles = roles
        self.compiled = {name: engine.compile_template(text, self.label(name)) for name, text in self.templates.items()}
        # What templates write after their loop with a generation prompt, and that loop's place,
        # where that depends on their variables only (see PrefixRenders).
        self.tails: dict[Any, tuple[str, int]] = {}

    def label(self, name: str) -> str:
        label = self.origin or "chat template"
        return label if len(self.templates) == 1 else f"{label} [{name}]"

    def pick(self, tools: Any) -> str:
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

    def source(self, tools: Any = None) -> str:
        """The Jinja text picked for ``tools``."""
        return self.templates[self.pick(tools)]

    def _variables(self, variables: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = dict(self.special_tokens)
        if self.bos_token is not None:
            merged["bos_token"] = self.bos_token
        if self.eos_token is not None:
            merged["eos_token"] = self.eos_token
        merged.update(variables)
        return merged

    def prepare(
        self,
        messages: Any,
        tools: Any = None,
        documents: Any = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        now: datetime | None = None,
        variables: dict[str, Any] | None = None,
        with_spans: bool = False,
        marker: Marking | None = None,
        limits: Limits | None = None,
    ) -> Prepared:
        """Validate, then normalise (and mark) the input of a render: done once, rendered as
        often as needed (derived masks render every prefix of the same conversation)."""
        # Validate, then normalise, then render: the same steps, in the same order, as the
        # reference, so the same inputs fail and the same inputs render.
        limits = self.limits if limits is None else check_limits(limits)
        name = self.pick(tools)
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
        variables = plain_input(variables or {}, "variables", budget)
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
        return Prepared(
            name, chat, template_vars, limits, now, marker is not None, continued, add_generation_prompt, with_spans
        )

    def render(
        self,
        prepared: Prepared,
        chat: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool | None = None,
        with_spans: bool | None = None,
    ) -> RenderResult:
        """Render prepared input, as it was prepared or with a prefix of its conversation
        (``chat``) and other settings (derived masks render every prefix)."""
        chat = prepared.chat if chat is None else chat
        with_spans = prepared.with_spans if with_spans is None else with_spans
        if with_spans:
            text, spans = self._run(engine.render_with_spans, prepared, chat, add_generation_prompt)
        else:
            text, spans = self._run(engine.render, prepared, chat, add_generation_prompt), []
        if prepared.marked:
            text, spans = unescape_markers(text, spans)
        if prepared.continued is not None and chat is prepared.chat:
            text = _close_final_message(text, prepared.continued)
        return RenderResult(text, spans)

    def prefixes(self, prepared: Prepared, text: str | None = None) -> PrefixRenders:
        """The conversation rendered whole (``text``, if it is rendered already), with the
        renders of its prefixes on demand (see :class:`PrefixRenders`)."""
        return PrefixRenders(self, prepared, text)

    def _record(self, prepared: Prepared, add_generation_prompt: bool, count: int | None = None) -> engine.Recording | None:
        """A recorded render of the first ``count`` messages (all by default), or ``None`` where
        recording cannot tell prefixes apart."""
        if prepared.continued is not None or prepared.with_spans:
            return None
        chat = prepared.chat if count is None else prepared.chat[:count]
        recorded = self._run(engine.record, prepared, chat, add_generation_prompt)
        if recorded is not None and prepared.marked and unescape_markers(recorded.text, [])[0] is not recorded.text:
            # Escaped markers (data printed with repr or ASCII JSON) are put back, which moves
            # every position after them: rare enough to render such prefixes one by one.
            return None
        return recorded

    def _run(
        self, run: Callable[..., _Out], prepared: Prepared, chat: list[dict[str, Any]], add_generation_prompt: bool | None
    ) -> _Out:
        """``run`` (an engine render) on the compiled template with ``chat``: the choke point
        where whatever a template raises becomes chatplate's error."""
        template_vars = dict(prepared.variables)
        template_vars["messages"] = chat
        template_vars["add_generation_prompt"] = (
            prepared.add_generation_prompt if add_generation_prompt is None else add_generation_prompt
        )
        try:
            return run(self.compiled[prepared.name], template_vars, engine.Budget(prepared.limits, prepared.now))
        except Exception as exc:  # noqa: BLE001 - everything a template raises
            raise engine.translate_runtime_error(exc, self.label(prepared.name)) from exc

    def render_text(self, conversation: Any, render_kwargs: dict[str, Any], marker: Marking | None) -> str:
        """Render for encoding: control tokens in the data carry markers when ``marker`` is set."""
        return self.render(self.prepare(conversation, **render_kwargs, with_spans=False, marker=marker)).text


@dataclass(frozen=True)
class Prepared:
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


class PrefixRenders:
    """A conversation rendered whole, and the renders of its prefixes on demand (derived masks
    compare them): cut from recorded renders where those tell them (``engine/recording.py``),
    rendered one by one where they do not.

    A prefix with the render's own ``add_generation_prompt`` is the whole render cut where the
    template's loop took the next message, joined to what it wrote after the loop. One with a
    generation prompt (the whole render having none) is the whole render up to that point,
    joined to what the template writes after its loop with a generation prompt: learnt from a
    recorded render of the first such prefix, or from an earlier conversation when that output
    depends only on the template's variables.

    >>> r = Renderer({"default": "{% for m in messages %}<{{ m.content }}>{% endfor %}{% if add_generation_prompt %}!{% endif %}"})
    >>> renders = r.prefixes(r.prepare([{"role": "user", "content": "a"}] * 3))
    >>> renders.text, renders.render(1, True), renders.render(2, True), renders.render(2, False)
    ('<a><a><a>', '<a>!', '<a><a>!', '<a><a>')
    """

    def __init__(self, renderer: Renderer, prepared: Prepared, text: str | None = None) -> None:
        self.renderer, self.prepared = renderer, prepared
        # Given the text, nothing is recorded: every prefix is rendered.
        self._recording = renderer._record(prepared, prepared.add_generation_prompt) if text is None else None
        if text is None:
            text = self._recording.text if self._recording is not None else renderer.render(prepared).text
        self.text = text
        # What the template writes after its loop with a generation prompt, that loop's place in
        # the template, and the first prefix it holds for.
        self._tail: tuple[str, int, int] | None = None
        self._tries = _TAIL_TRIES

    def render(self, count: int, add_generation_prompt: bool) -> str | None:
        """The first ``count`` messages rendered (``None`` if the template refuses them)."""
        recording = self._recording
        if recording is not None:
            if add_generation_prompt == self.prepared.add_generation_prompt:
                cut = recording.cut(count)
                if cut is not None:
                    return self.text[: cut[0]] + self.text[cut[1] :]
            elif add_generation_prompt:
                if self._tail is None and self._tries:
                    return self._learn_tail(count)
                if self._tail is not None and count >= self._tail[2]:
                    head = recording.head(count, self._tail[1])
                    if head is not None:
                        return self.text[:head] + self._tail[0]
        return self._render(count, add_generation_prompt)

    def message_start(self, count: int) -> int | None:
        """Where in :attr:`text` the template's loop took message ``count`` (the end of what it
        wrote for the messages before), or ``None`` where the recording cannot tell.

        >>> r = Renderer({"default": "{% for m in messages %}<{{ m.content }}>{% endfor %}"})
        >>> r.prefixes(r.prepare([{"role": "user", "content": "a"}] * 3)).message_start(2)
        6
        """
        cut = self._recording.cut(count) if self._recording is not None else None
        return cut[0] if cut is not None else None

    def _learn_tail(self, count: int) -> str | None:
        # Learnt from this prefix's own render, recorded: the answer for this prefix either way.
        self._tries -= 1
        renderer, prepared = self.renderer, self.prepared
        try:
            key: Any = (prepared.name, prepared.now, tuple(prepared.variables.items()))
            cached = renderer.tails.get(key)
        except TypeError:  # a variable holds a list or a dict: not a key, learnt again each time
            key = cached = None
        if cached is not None:
            self._tail = (*cached, 1)
            return self.render(count, True)
        try:
            recording = renderer._record(prepared, True, count)
        except ChatplateError:
            return None
        if recording is None:
            return self._render(count, True)
        found = recording.tail()
        if found is not None:
            start, loop, shared = found
            tail = recording.text[start:]
            self._tail = (tail, loop, count)
            if shared and key is not None:
                if len(renderer.tails) >= _TAILS_KEPT:
                    renderer.tails.clear()
                renderer.tails[key] = (tail, loop)
        return recording.text

    def _render(self, count: int, add_generation_prompt: bool) -> str | None:
        try:
            return self.renderer.render(self.prepared, self.prepared.chat[:count], add_generation_prompt, False).text
        except ChatplateError:
            return None


# Generation-prompt tails kept per renderer (one per distinct set of template variables).
_TAILS_KEPT = 64
# Prompted prefixes recorded to learn the tail from (a first one may be too short to show the
# loop: a system message that the loop skips) before the rest are rendered without recording.
_TAIL_TRIES = 2


def render_kwargs(
    tools: Any, documents: Any, add_generation_prompt: bool, continue_final_message: bool | str, now: Any,
    variables: dict[str, Any], limits: Limits | None = None,
) -> dict[str, Any]:
    """The keyword arguments of :meth:`Renderer.prepare` an encode call carries for each conversation."""
    return dict(
        tools=tools,
        documents=documents,
        add_generation_prompt=add_generation_prompt,
        continue_final_message=continue_final_message,
        now=now,
        variables=variables,
        limits=limits,
    )


def check_limits(limits: Any) -> Limits:
    if not isinstance(limits, Limits):
        raise InputError(f"limits: expected a chatplate.Limits, got {type(limits).__name__}")
    return limits


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


def common_prefix(a: str, b: str, start: int = 0) -> int:
    """Where ``a`` and ``b``, equal up to ``start``, first differ (their common length if they
    do not): a bisection over slice comparisons, which run in C, where ``os.path.commonprefix``
    walks characters in Python.

    >>> common_prefix("<s>hello there", "<s>hello world", 3)
    9
    """
    size = min(len(a), len(b))
    if a[start:size] == b[start:size]:
        return size
    low, high = start, size  # a[:low] == b[:low]; a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle
    return low


def common_suffix(a: str, b: str) -> int:
    """How many characters ``a`` and ``b`` share at their ends (bisecting, like :func:`common_prefix`).

    >>> common_suffix("hello there</s>", "bye there</s>")
    10
    """
    size = min(len(a), len(b))
    if a[len(a) - size:] == b[len(b) - size:]:
        return size
    low, high = 0, size  # the last `low` characters agree; the last `high` do not
    while high - low > 1:
        middle = (low + high) // 2
        if a[len(a) - middle:] == b[len(b) - middle:]:
            low = middle
        else:
            high = middle
    return low
