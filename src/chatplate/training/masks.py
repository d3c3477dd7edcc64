"""Which characters of a rendered conversation the model is trained to produce.

Two sources of spans, one result (character spans in the rendered text):

- ``{% generation %}`` blocks, where the template has them (as transformers reads them);
- otherwise derived, for any template: what the template renders for a turn after the
  generation prompt (the rendering of the conversation up to that turn with
  ``add_generation_prompt=True``), through the turn's end-of-turn marker (its last control
  token). Those prefix renders come from one recorded render of the whole conversation where
  it tells them (:class:`chatplate.rendering.PrefixRenders`), so for most templates deriving
  costs one render, not two more per trained turn.

Spans become token masks in :mod:`chatplate.tokens.spans` by one rule: a token is trained when
its characters overlap a span, so a token straddling a span edge is trained.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import engine
from ..errors import InputError, MaskError
from ..messages import validate_conversation
from ..rendering import Prepared, Renderer, common_prefix
from ..safety import START, Marker, Marking
from ..tokens.spans import IGNORE_INDEX, Spans, labels_from, token_mask

__all__ = ["MaskOptions", "conversation_spans", "common_prefix", "token_mask", "labels_from", "IGNORE_INDEX"]


@dataclass(frozen=True)
class MaskOptions:
    """What is trained.

    ``roles``: the roles whose turns are trained (default the assistant's). ``end_of_turn``:
    train the end-of-turn marker after each turn (default yes: a model that never learns it does
    not stop). ``last_turn_only``: train only the last trained turn. ``derive``: ignore
    ``{% generation %}`` blocks and derive the spans (``None``, the default, uses the blocks
    when the template has them). A message with ``"train": False`` is never trained.
    """

    roles: frozenset[str] = frozenset({"assistant"})
    end_of_turn: bool = True
    last_turn_only: bool = False
    derive: bool | None = None

    @classmethod
    def from_arguments(
        cls, roles: Sequence[str] | str | None, end_of_turn: bool, last_turn_only: bool, derive: bool | None
    ) -> MaskOptions:
        if roles is None:
            chosen = frozenset({"assistant"})
        elif isinstance(roles, str):
            chosen = frozenset({roles})
        else:
            chosen = frozenset(roles)
        if not chosen or not all(isinstance(role, str) for role in chosen):
            raise InputError(f"train_roles: expected role names, got {roles!r}")
        return cls(chosen, bool(end_of_turn), bool(last_turn_only), derive)

    def spans(
        self, renderer: Renderer, conversation: Any, render_kwargs: dict[str, Any], marker: Marking | None, control: Marker
    ) -> tuple[str, Spans]:
        """:func:`conversation_spans` with these options (the encoder's ``SpanFinder``)."""
        return conversation_spans(renderer, conversation, render_kwargs, marker, control, self)


def conversation_spans(
    renderer: Renderer,
    conversation: Any,
    render_kwargs: dict[str, Any],
    marker: Marking | None,
    eot: Marker,
    options: MaskOptions,
) -> tuple[str, list[tuple[int, int]]]:
    """Render ``conversation`` (with control-token ``marker`` s, if any) and return the text and
    its trained character spans, sorted and disjoint, in that (marked) text.

    ``eot`` holds the tokenizer's control tokens: the end-of-turn marker of a turn is the last
    one the template writes in it.
    """
    if render_kwargs.get("continue_final_message"):
        raise InputError("continue_final_message cannot be combined with training masks (the last turn is open)")
    if type(conversation) is list and not any(type(m) is dict and "train" in m for m in conversation):
        # Nothing to remove: the render validates it (and keeps its own copy).
        messages, trained = conversation, [True] * len(conversation)
    else:
        # "train" is chatplate's annotation, not message data: templates never see it.
        messages = validate_conversation(conversation)
        trained = [message.pop("train", True) is not False for message in messages]
    source = renderer.source(render_kwargs.get("tools"))
    use_blocks = engine.has_generation_blocks(source) if options.derive is None else not options.derive
    # Validated and marked once; the prefixes derived masks need are rendered from it.
    prepared = renderer.prepare(messages, **render_kwargs, with_spans=use_blocks, marker=marker)
    if use_blocks:
        result = renderer.render(prepared)
        text, spans = result.text, [(s, e) for s, e in result.generation_spans if e > s]
        default_selection = options.roles == {"assistant"} and all(trained)
        if not default_selection:
            # Which message a block belongs to: the derived turn it overlaps.
            turns = _derived_turns(renderer, prepared, messages, text, eot, options.roles)
            keep = [(s, e) for s, e, index in turns.spans if trained[index]]
            spans = [(s, e) for s, e in spans if any(s < ke and e > ks for ks, ke in keep)]
        # A block's span is what the template marks, as transformers reads it.
        if not options.end_of_turn:
            spans = [_through_end_of_turn(text, s, e, eot, False) for s, e in spans]
    else:
        turns = _derived_turns(renderer, prepared, messages, None, eot, options.roles)
        text = turns.text
        spans = [_through_end_of_turn(text, s, e, eot, options.end_of_turn) for s, e, index in turns.spans if trained[index]]
    spans = sorted((s, e) for s, e in spans if e > s)
    if options.last_turn_only and spans:
        spans = spans[-1:]
    return text, spans


@dataclass
class _Turns:
    text: str  # the whole conversation rendered
    spans: list[tuple[int, int, int]]  # (start, end, message index)


def _derived_turns(
    renderer: Renderer,
    prepared: Prepared,
    messages: list[dict[str, Any]],
    text: str | None,
    eot: Marker,
    roles: frozenset[str],
) -> _Turns:
    """``(start, end, message index)`` of each turn of ``roles`` in the whole conversation
    rendered (``text``, rendered here if not given): from the end of the turn's generation prompt
    (for roles other than the assistant's, which have none, from the end of the previous turn)
    to where the rendering of the conversation up to that turn and ``text`` part (what a template
    adds after the final message only, such as a closing EOS, is not the turn's)."""
    turns: list[tuple[int, int, int]] = []
    cursor = 0
    indices = [index for index, message in enumerate(messages) if message.get("role") in roles]
    renders = renderer.prefixes(prepared, text)
    text = renders.text
    # Each message's text as it reaches the rendered text (marked already, if data is), to find
    # turns by.
    texts = [_last_text(message.get("content")) for message in prepared.chat]
    for index in indices:
        message = messages[index]
        role = message.get("role")
        prefix = renders.render(index, role == "assistant") if index else ""
        if index + 1 == len(messages) and not prepared.add_generation_prompt:
            turn = text  # the whole conversation, rendered already
        else:
            turn = renders.render(index + 1, False)
        if prefix is None or turn is None:
            raise MaskError(
                f"messages[{index}]: cannot derive what the model produces for this {role} turn: the template "
                "does not render the conversation up to it; use a template with {% generation %} blocks",
                index=index,
            )
        start = common_prefix(prefix, turn)
        content = texts[index]
        rendered_content = bool(content) and content in turn[start:]
        # The prefix is trusted only if the turn before this one ends inside it (a template may
        # render earlier messages elsewhere once there are more of them: a system prompt moved
        # into the last user turn, say).
        before = texts[index - 1] if index else ""
        # (Looked for backwards from `start` first, where the previous message usually ends.)
        stable = start >= cursor and text.startswith(turn[:start]) and not (
            before and turn.rfind(before, 0, start) < 0 and before in turn
        )
        span = None
        if stable:
            end = _turn_end(text, turn, start, eot)
            if not rendered_content or content in text[start:end]:
                span = (start, end)
        if span is None and rendered_content:
            # The template renders this turn differently once later turns exist (reasoning
            # dropped from history, say): the turn is its content, through the marker after it,
            # from the end of its generation prompt when that is known.
            at = text.find(content, cursor)
            if at >= 0:
                end = at + len(content)
                following = _marker_after(text, end, eot)
                # Only a marker that closes messages is this turn's; another control token there
                # belongs to what follows. It closes messages if it closes this content in the
                # turn's own rendering, or the message before it in the whole conversation (a
                # template may close history turns with another marker than the last one:
                # harmony's <|end|> and <|return|>).
                closing = _marker_after(turn, turn.find(content, start) + len(content), eot)
                previous = text.rfind(before, 0, at) if before else -1
                closes_previous = _marker_after(text, previous + len(before), eot) if previous >= 0 else None
                if following and any(m and m.group() == following.group() for m in (closing, closes_previous)):
                    end = following.end()
                # What the template writes before the content is the turn's, unless another
                # message's text is in it (tool results folded into the model's turn).
                lead = text[start:at] if stable and start <= at else None
                if lead and any(other and other in lead for j, other in enumerate(texts) if j != index):
                    lead = None
                span = (start if lead is not None else at, end)
        if span is None and stable:
            span = (start, _turn_end(text, turn, start, eot))
        if span is None:
            raise MaskError(
                f"messages[{index}]: cannot find what the template renders for this {role} turn in the whole "
                "conversation (it renders the turn differently once later turns exist); use a template with "
                "{% generation %} blocks",
                index=index,
            )
        turns.append((span[0], span[1], index))
        cursor = span[1]
    return _Turns(text, turns)


def _turn_end(text: str, turn: str, start: int, eot: Marker) -> int:
    """Where the turn starting at ``start`` ends in ``text``: where ``text`` and ``turn`` (the
    conversation rendered up to this turn) part. That point is moved back out of any control
    token it falls in (``<|end|>`` and ``<|endoftext|>`` share ``<|``). When the turn rendered
    last closes with one marker and ``text`` closes it with another (``<|return|>`` and
    ``<|end|>``), the one in ``text`` is the turn's."""
    end = common_prefix(turn, text, start)
    reach = eot.longest  # a token around `end` starts and ends within this of it
    for source in (turn, text):
        for match in _control_matches(source, eot, max(start, end - reach), min(len(source), end + reach)):
            if match.start() < end < match.end():
                end = match.start()
    rest_of_turn = turn[end:]
    closing = eot.tokens.match(rest_of_turn)
    if closing and not rest_of_turn[closing.end():].strip() and not _control_matches(text, eot, start, end):
        instead = eot.tokens.match(text, end)
        if instead:
            end = instead.end()
    return end


_SPACE = re.compile(r"\s*")


def _marker_after(text: str, position: int, eot: Marker) -> re.Match[str] | None:
    """The control token at ``position``, after any whitespace."""
    return eot.tokens.match(text, _SPACE.match(text, position).end())


def _last_text(content: Any) -> str:
    """The message's last piece of text (stripped), to find the turn by."""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        for part in reversed(content):
            if isinstance(part, dict) and isinstance(part.get("text"), str) and part["text"].strip():
                return part["text"].strip()
    return ""


def _control_matches(text: str, eot: Marker, start: int, end: int) -> list[re.Match[str]]:
    # Tokens that data carried in (marked) are text, not end-of-turn markers.
    return [m for m in eot.tokens.finditer(text, start, end) if not (m.start() > 0 and text[m.start() - 1] == START)]


def _through_end_of_turn(text: str, start: int, end: int, eot: Marker, include: bool) -> tuple[int, int]:
    """Cut a span after its end-of-turn marker: the last control token the template wrote in it
    with only whitespace after it. Without such a marker, trailing whitespace is cut. With
    ``include=False`` the marker itself is left out too."""
    visible = start + len(text[start:end].rstrip())
    # A marker with only whitespace after it holds the span's last visible character (or lies in
    # the whitespace after it): it starts within the longest marker's length of that character.
    found = _control_matches(text, eot, max(start, visible - eot.longest), end)
    if found and not text[found[-1].end() : end].strip():
        return (start, found[-1].end()) if include else (start, found[-1].start())
    return start, visible
