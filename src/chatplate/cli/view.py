"""A rendered prompt made readable: message text coloured by role, control tokens marked,
whitespace made visible."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.text import Text

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
# What stands in for whitespace a reader could not otherwise see (spaces only at line edges).
_WHITESPACE_MARKS = {"\n": "↵", "\t": "⇥", " ": "·"}
TEMPLATE_STYLE = "dim"

# Shapes control tokens take across families: <|im_start|>, <｜User｜>, [INST], <<SYS>>, <s>,
# <start_of_turn>, <BOS_TOKEN>, [|endofturn|].
_CONTROL_SHAPES = [
    r"<\|[^|\s<>]{1,40}\|>",
    r"<\uff5c[^\uff5c\n]{1,40}\uff5c>",
    r"\[/?[A-Z][A-Z_]{1,30}\]",
    r"<</?SYS>>",
    r"</?s>",
    r"<(?:start|end)_of_turn>",
    r"<[A-Z][A-Z_]{2,40}>",
    r"\[\|[a-z_]{2,30}\|\]",
]


def control_token_pattern(template: ChatTemplate) -> re.Pattern[str]:
    """A regex for the template's own special tokens plus the usual control-token shapes."""
    tokens = [t for t in (template.bos_token, template.eos_token, *template.special_tokens.values()) if isinstance(t, str) and t]
    exact = [re.escape(t) for t in sorted(set(tokens), key=len, reverse=True)]
    return re.compile("|".join(exact + _CONTROL_SHAPES))


def message_spans(text: str, messages: Iterable[Any]) -> list[tuple[int, int, str]]:
    """Where each message's text shows up in the prompt, searched in order: (start, end, role)."""
    spans = []
    cursor = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", ""))
        for piece in _texts(message):
            piece = piece.strip()
            if not piece:
                continue
            found = text.find(piece, cursor)
            if found >= 0:
                spans.append((found, found + len(piece), role))
                cursor = found + len(piece)
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


def prompt_view(text: str, messages: Iterable[Any], template: ChatTemplate) -> Text:
    """The prompt as rich ``Text``: ``↵`` ends each line, ``·`` marks spaces at line edges,
    ``⇥`` tabs; template text is dim, message text is coloured by role, control tokens stand out.
    """
    styles: list[str] = [TEMPLATE_STYLE] * len(text)
    for start, end, role in message_spans(text, messages):
        styles[start:end] = [ROLE_STYLES.get(role, "white")] * (end - start)
    for match in control_token_pattern(template).finditer(text):
        styles[match.start() : match.end()] = [CONTROL_STYLE] * (match.end() - match.start())

    out = Text()
    edge = _edge_spaces(text)
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
    legend = Text("\n\n")
    legend.append("legend: ", style="bold")
    legend.append("template text", style=TEMPLATE_STYLE)
    for role in ("system", "user", "assistant", "tool"):
        legend.append("  ")
        legend.append(role, style=ROLE_STYLES[role])
    legend.append("  ")
    legend.append("control token", style=CONTROL_STYLE)
    legend.append("  ↵ newline  · edge space  ⇥ tab", style=WHITESPACE_STYLE)
    return out + legend


def _edge_spaces(text: str) -> set[int]:
    """Indices of spaces that start or end a line, the ones a reader cannot see."""
    edge: set[int] = set()
    for match in re.finditer(r"(?m)^ +| +$", text):
        edge.update(range(match.start(), match.end()))
    return edge


def token_table(enc: Encoding, messages: Iterable[Any], tokenizer: ChatTokenizer) -> Any:
    """One row per token: position, id, its text (whitespace visible) and whose text it is;
    with masks, a ``trained`` column marks the tokens the model learns to produce."""
    from rich.table import Table

    roles = [""] * len(enc.text)
    for start, end, role in message_spans(enc.text, messages):
        roles[start:end] = [role] * (end - start)
    control_ids = {tokenizer.added_tokens[t] for t in tokenizer.special_tokens if t in tokenizer.added_tokens}
    table = Table(box=None, show_edge=False, pad_edge=False, title=f"{len(enc.input_ids)} tokens", title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("id", justify="right")
    table.add_column("token")
    table.add_column("from", style="dim")
    if enc.assistant_mask is not None:
        table.add_column("trained", justify="center")
    for index, (token_id, (start, end)) in enumerate(zip(enc.input_ids, enc.offsets or [])):
        piece = enc.text[start:end]
        shown = piece.replace("\n", "↵").replace("\t", "⇥").replace(" ", "·")
        role = next((roles[i] for i in range(start, end) if roles[i]), "")
        if token_id in control_ids:
            style, source = CONTROL_STYLE, "control"
        else:
            style, source = (ROLE_STYLES.get(role, "white"), role) if role else (TEMPLATE_STYLE, "template")
        cells = [str(index), str(token_id), Text(shown, style=style), source]
        if enc.assistant_mask is not None:
            cells.append(Text("✓", style="bold green") if enc.assistant_mask[index] else "")
        table.add_row(*cells)
    if enc.missing_bos:
        table.caption = "warning: the prompt lacks the BOS token this tokenizer adds to other input"
    return table
