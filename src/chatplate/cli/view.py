"""A rendered prompt made readable: message text coloured by role, control tokens marked,
whitespace made visible."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text

from ..limits import Limits
from ..template import ChatTemplate
from ..tokens import ChatTokenizer, Encoding

ROLE_STYLES = {
    "system": "magenta",
    "user": "green",
    "assistant": "cyan",
    "tool": "yellow",
    "ipython": "yellow",
    "function": "yellow",
    "developer": "magenta",
}
CONTROL_STYLE = "bold white on blue"
WHITESPACE_STYLE = "bold red"
# What stands in for whitespace a reader could not otherwise see (spaces only at edges).
_WHITESPACE_MARKS = {"\n": "↵", "\t": "⇥", " ": "·"}
TEMPLATE_STYLE = "dim"
PIECE_STYLE = "italic dim"

# Shapes control tokens take across families: <|im_start|>, <｜User｜>, [INST], <<SYS>>, <s>,
# <start_of_turn>, <BOS_TOKEN>, [|endofturn|]. Without a tokenizer, these are the candidates.
_CONTROL_SHAPES = re.compile(
    "|".join([
        r"<\|[^|\s<>]{1,40}\|>",
        r"<\uff5c[^\uff5c\n]{1,40}\uff5c>",
        r"\[/?[A-Z][A-Z_]{1,30}\]",
        r"<</?SYS>>",
        r"</?s>",
        r"<(?:start|end)_of_turn>",
        r"<[A-Z][A-Z_]{2,40}>",
        r"\[\|[a-z_]{2,30}\|\]",
    ])
)


@dataclass
class Prompt:
    """A prompt to show: its text and the spans the template wrote as control tokens."""

    text: str
    control: list[tuple[int, int]]


def prompt_from_template(
    template: ChatTemplate,
    messages: Any,
    *,
    tools: Any = None,
    documents: Any = None,
    add_generation_prompt: bool = False,
    continue_final_message: bool | str = False,
    now: datetime | None = None,
    limits: Limits | None = None,
    **variables: Any,
) -> Prompt:
    """The prompt and its control tokens as ``encode`` would see them: with a tokenizer, the
    tokens that are its control tokens; without one, token-shaped text the template itself wrote
    (never what the messages, tools or documents carry)."""
    options: dict[str, Any] = dict(
        tools=tools, documents=documents, add_generation_prompt=add_generation_prompt,
        continue_final_message=continue_final_message, now=now, limits=limits,
    )
    if template.has_tokenizer:
        enc = template.encode(messages, return_offsets=True, **options, **variables)
        assert enc.offsets is not None
        control = control_ids(template.tokenizer)
        return Prompt(enc.text, [span for token, span in zip(enc.input_ids, enc.offsets) if token in control])
    from ..rendering import render_kwargs
    from ..tokens.encoder import template_control_spans

    plain = template.render(messages, **options, **variables)
    declared = (template.bos_token, template.eos_token, *template.special_tokens.values())
    candidates = {t for t in declared if isinstance(t, str) and t} | {m.group() for m in _CONTROL_SHAPES.finditer(plain)}
    kwargs = render_kwargs(**options, variables=variables)
    text, spans = template_control_spans(template.renderer, messages, kwargs, tuple(sorted(candidates)))
    return Prompt(text, spans)


def control_ids(tokenizer: ChatTokenizer) -> set[int]:
    """Ids of the tokens that mark structure: the special tokens, and added tokens plain text can
    never produce (``<tool_call>``); not added tokens that are ordinary text too (Gemma's HTML)."""
    return {
        token_id for token, token_id in tokenizer.added_tokens.items()
        if token in tokenizer.special_tokens or token in tokenizer.unreachable_tokens
    }


def message_spans(text: str, messages: Iterable[Any]) -> list[tuple[int, int, str]]:
    """Where each message's text shows up in the prompt, searched in order: (start, end, role).
    A text is looked for whole (so its edge spaces count as the message's), then stripped (for
    templates that trim it)."""
    spans = []
    cursor = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", ""))
        for piece in _texts(message):
            for candidate in (piece, piece.strip()):
                found = text.find(candidate, cursor) if candidate.strip() else -1
                if found >= 0:
                    spans.append((found, found + len(candidate), role))
                    cursor = found + len(candidate)
                    break
    return spans


def _texts(message: dict[str, Any]) -> list[str]:
    pieces = []
    for key in ("reasoning_content", "thinking", "reasoning", "content"):
        value = message.get(key)
        if isinstance(value, str):
            pieces.append(value)
        elif isinstance(value, list):
            pieces.extend(p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return pieces


def prompt_view(prompt: Prompt, messages: Iterable[Any], *, legend: bool = True) -> Text:
    """The prompt as rich ``Text``: ``↵`` ends each line, ``·`` marks spaces at the edges of
    lines and of message text, ``⇥`` tabs; template text is dim, message text is coloured by
    role, control tokens stand out. ``legend`` adds a key (for a terminal)."""
    text = prompt.text
    styles: list[str] = [TEMPLATE_STYLE] * len(text)
    spans = message_spans(text, messages)
    for start, end, role in spans:
        styles[start:end] = [ROLE_STYLES.get(role, "white")] * (end - start)
    for start, end in prompt.control:
        styles[start:end] = [CONTROL_STYLE] * (end - start)

    out = Text()
    edge = _edge_spaces(text, [(start, end) for start, end, _ in spans])
    run_start = 0
    for index, char in enumerate(text):
        marker = _WHITESPACE_MARKS.get(char) if char != " " or index in edge else None
        if marker is None and (index + 1 == len(text) or styles[index + 1] == styles[index]):
            continue
        if marker is None:
            out.append(text[run_start : index + 1], style=styles[index])
        else:
            out.append(text[run_start:index], style=styles[index - 1] if index else TEMPLATE_STYLE)
            out.append(marker, style=WHITESPACE_STYLE)
            if char == "\n":
                out.append("\n")
        run_start = index + 1
    out.append(text[run_start:], style=styles[-1] if text else TEMPLATE_STYLE)
    if not legend:
        return out
    key = Text("\n\n")
    key.append("legend: ", style="bold")
    key.append("template text", style=TEMPLATE_STYLE)
    for role in ("system", "user", "assistant", "tool"):
        key.append("  ")
        key.append(role, style=ROLE_STYLES[role])
    key.append("  ")
    key.append("control token", style=CONTROL_STYLE)
    key.append("  ↵ newline  · edge space  ⇥ tab", style=WHITESPACE_STYLE)
    return out + key


def _edge_spaces(text: str, spans: list[tuple[int, int]]) -> set[int]:
    """Indices of the spaces a reader cannot see: those that start or end a line, a message's
    text, or the prompt."""
    edge: set[int] = set()
    for match in re.finditer(r"(?m)^ +| +$", text):
        edge.update(range(match.start(), match.end()))
    for start, end in spans:
        piece = text[start:end]
        edge.update(range(start, start + len(piece) - len(piece.lstrip(" "))))
        edge.update(range(start + len(piece.rstrip(" ")), end))
    return edge


def token_table(enc: Encoding, messages: Iterable[Any], tokenizer: ChatTokenizer) -> Any:
    """One row per token: position, id, its text (whitespace visible) and whose text it is;
    with masks, a ``trained`` column marks the tokens the model learns to produce.

    Tokens that share their characters with a neighbour (SentencePiece's ``▁`` before a byte
    token, the bytes of one character) show the text once, on the token that spells it out, and
    their own vocabulary piece otherwise."""
    from rich.table import Table

    roles = [""] * len(enc.text)
    for start, end, role in message_spans(enc.text, messages):
        roles[start:end] = [role] * (end - start)
    control = control_ids(tokenizer)
    table = Table(box=None, show_edge=False, pad_edge=False, title=f"{len(enc.input_ids)} tokens", title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("id", justify="right")
    table.add_column("token")
    table.add_column("from", style="dim")
    if enc.assistant_mask is not None:
        table.add_column("trained", justify="center")
    offsets = enc.offsets or []
    spelled = _spelling_tokens(enc.input_ids, offsets, enc.text, tokenizer)
    for index, (token_id, (start, end)) in enumerate(zip(enc.input_ids, offsets)):
        role = next((roles[i] for i in range(start, end) if roles[i]), "")
        if token_id in control:
            style, source = CONTROL_STYLE, "control"
        else:
            style, source = (ROLE_STYLES.get(role, "white"), role) if role else (TEMPLATE_STYLE, "template")
        if index in spelled:
            shown = Text(enc.text[start:end].replace("\n", "↵").replace("\t", "⇥").replace(" ", "·"), style=style)
        else:
            shown = Text(tokenizer.backend.id_to_token(token_id) or "", style=PIECE_STYLE)
        cells = [str(index), str(token_id), shown, source]
        if enc.assistant_mask is not None:
            cells.append(Text("✓", style="bold green") if enc.assistant_mask[index] else "")
        table.add_row(*cells)
    return table


def _spelling_tokens(ids: list[int], offsets: list[tuple[int, int]], text: str, tokenizer: ChatTokenizer) -> set[int]:
    """Positions whose token shows the text at its offsets: every token with offsets of its own,
    and in a run of tokens with the same offsets the one that decodes to that text (else the first)."""
    shown: set[int] = set()
    index = 0
    while index < len(ids):
        run = index + 1
        while run < len(ids) and offsets[run] == offsets[index]:
            run += 1
        if run - index == 1:
            shown.add(index)
        else:
            start, end = offsets[index]
            piece = text[start:end]
            spelled = [i for i in range(index, run) if tokenizer.backend.decode([ids[i]], skip_special_tokens=False) == piece]
            shown.add(spelled[0] if spelled else index)
        index = run
    return shown


# -- a parsed response ----------------------------------------------------------------------------

LABEL_STYLE = "bold"
REASONING_STYLE = "dim"
CALL_NAME_STYLE = "bold cyan"
OK_STYLE = "green"
NOT_OK_STYLE = "bold red"


def response_view(message: Any, *, reasoning_field: str = "reasoning_content") -> Text:
    """A parsed assistant message for a person: the format and why, the reasoning (dim), the content,
    each tool call (name, status, arguments as JSON; the raw text when it did not read cleanly),
    the stop marker and any text after it. Message text is shown as it is (indented two spaces)."""
    import json

    out = Text()

    def label(name: str, note: str = "") -> None:
        out.append(name, style=LABEL_STYLE)
        if note:
            out.append(f" {note}", style="dim")
        out.append("\n")

    def body(text: str, style: str = "") -> None:
        for line in text.split("\n"):
            out.append("  ")
            out.append(line, style=style)
            out.append("\n")

    out.append("format ", style=LABEL_STYLE)
    out.append(message.format.name, style="cyan")
    out.append("\n")
    if message.format.reason:
        out.append(f"  {message.format.reason}\n", style="dim")
    reasoning = message.get(reasoning_field)
    if isinstance(reasoning, str):
        label("reasoning", "" if message.reasoning_closed else "(not closed)")
        body(reasoning, REASONING_STYLE)
    content = message.get("content")
    label("content", "" if content else "(empty)")
    if content:
        body(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False))
    calls = message.calls
    if calls:
        label(f"tool calls ({len(calls)})")
    for number, call in enumerate(calls, 1):
        out.append(f"  {number}. ")
        out.append(call.name if call.name is not None else "(no name)", style=CALL_NAME_STYLE)
        out.append("  ")
        out.append(call.status, style=OK_STYLE if call.ok else NOT_OK_STYLE)
        if call.error:
            out.append(f": {call.error}", style="red")
        if call.id is not None:
            out.append(f"  id {call.id}", style="dim")
        out.append("\n")
        if isinstance(call.arguments, dict):
            shown = json.dumps(call.arguments, ensure_ascii=False)
            if len(shown) > 72:  # long arguments one key a line
                shown = json.dumps(call.arguments, ensure_ascii=False, indent=2)
        else:
            shown = str(call.arguments)
        for line in shown.split("\n"):
            out.append(f"     {line}\n")
        if not call.ok and call.raw and call.raw != shown:
            out.append("     raw: ", style="dim")
            out.append(call.raw)
            out.append("\n")
    stop = message.stop
    out.append("stop ", style=LABEL_STYLE)
    out.append(stop if stop is not None else "(none: the text ended)", style=CONTROL_STYLE if stop is not None else "dim")
    trailing = message.trailing
    if trailing:
        out.append("\n")
        label("trailing", "(after the stop, not part of the message)")
        body(trailing, "dim")
        out.right_crop(1)  # the last newline: print adds its own
    return out
