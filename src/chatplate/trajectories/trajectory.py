"""A multi-turn rollout as the model saw it: sampled ids kept verbatim, the rest rendered.

The next prompt after a completion is found at the string level: the template renders the
conversation with the new messages, and what it writes after the completed turn is the only
text encoded. Those renders cover a window of the conversation (its system message, the last
user message, the round before the completed turn, the turn and the new messages), so the cost
of an extension does not grow with the conversation; the window's text is checked against the
trajectory's own tail, and a window that does not reproduce it gives way to a shorter one, then
to the whole conversation.

The boundary rule (where the sampled text meets the template's):

- the template's text continues what the model sampled (it wrote the same turn, stop token
  included): what follows is taken as it is, a separator the model never samples (ChatML's
  newline after ``<|im_end|>``) or a turn close a truncated completion lacks included;
- the model stopped with a control token where the template writes its end-of-turn marker
  (``<|endoftext|>`` for ``<|im_end|>``): the sampled stop stands in for the marker, and the
  template's text after the marker follows;
- otherwise the template renders the turn differently from what was sampled (reasoning dropped,
  arguments re-serialised): the sampled tokens stay, the turn is closed with the template's
  end-of-turn marker unless the model's stop closed it, and the template's text after it follows.

The end-of-turn markers are the template's own, found by probing what it renders
(:attr:`chatplate.ChatTemplate.response_format`), never from the model's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ChatplateError, InputError, TrajectoryError
from ..rendering import PrefixRenders, common_prefix, common_suffix
from ..safety import MARKS, START, has_markers, strip_markers
from ..tokens.spans import clean_positions
from ..tokens.encoder import template_markers
from ..tokens.encoding import encode_texts
from ..tokens.tokenizer import token_ids

if TYPE_CHECKING:
    from ..template import ChatTemplate

__all__ = ["Trajectory", "Extension", "token_start"]

Kind = Literal["clean", "realign", "fork"]
Boundary = Literal["exact", "stop", "rewritten"]

# What precedes the prompt the parser is told about (enough for a generation prompt).
_PARSE_CONTEXT = 512
# Characters either side of a position encoded to find the token spanning it.
_SNAP = 24


@dataclass(frozen=True)
class Extension:
    """What one :meth:`Trajectory.extend` found, compared with rendering the conversation again.

    ``kind``: ``"clean"`` when the trajectory's tokens are what a full re-render tokenizes to;
    ``"realign"`` when the text is the same but the token boundaries differ (sampled ids that are
    not the canonical tokenization, or tokens that merge across the boundary); ``"fork"`` when
    the re-render's text differs (the template rewrites history, or the model's stop was not the
    template's end of turn). ``position`` is the first token where the trajectory and the
    re-render's tokenization differ (``None`` when clean); ``kept_ids`` and ``rendered_ids`` are
    both continuations from there. ``start`` is the first token this extension added, and
    ``boundary`` the rule applied where the sampled turn meets the template's text (``"exact"``,
    ``"stop"`` or ``"rewritten"``; see :mod:`chatplate.trajectories`).
    """

    kind: Kind
    position: int | None
    start: int
    boundary: Boundary
    kept_ids: tuple[int, ...] = field(default=(), repr=False)
    rendered_ids: tuple[int, ...] = field(default=(), repr=False)


@dataclass
class _Continuation:
    """What the template writes after the sampled turn, found in one render of a window."""

    cut: int  # where in the window's render (new messages, generation prompt) the continuation begins
    text: str  # the continuation: the render from ``cut`` (marked)
    boundary: Boundary
    rewritten: bool  # the new messages changed how earlier messages render
    ends: list[int]  # in the render: where the completed turn and each new message end


class Trajectory:
    """Token-in, token-out: a conversation's ids as the model sampled and saw them.

    Made by :meth:`chatplate.ChatTemplate.trajectory`. Send :attr:`prompt_ids` to the engine,
    give its sampled ids to :meth:`add_completion`, then :meth:`extend` with tool results or
    user turns for the next prompt. The ids of every earlier prompt and completion stay a prefix
    of every later sequence, byte for byte; each extension is classified (:class:`Extension`).

    >>> import chatplate
    >>> t = chatplate.load(tests_model_dir)  # doctest: +SKIP
    >>> traj = t.trajectory([{"role": "user", "content": "What is 2+2?"}])  # doctest: +SKIP
    >>> traj.add_completion(engine.generate(traj.prompt_ids))  # doctest: +SKIP
    >>> next_prompt = traj.extend([{"role": "user", "content": "And 3+3?"}])  # doctest: +SKIP
    """

    def __init__(
        self,
        template: ChatTemplate,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Any] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        now: datetime | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        self.template = template
        tokenizer = template.tokenizer
        renderer = template.renderer
        self._variables = dict(variables or {})
        self._tools = list(tools) if tools is not None else None
        self._control, self._marking = template_markers(renderer, tokenizer, self._tools)
        self._prepared = renderer.prepare(
            messages, self._tools, documents, True, False, now, self._variables, False, self._marking, None
        )
        self._chat = list(self._prepared.chat)
        self._messages = [dict(message) for message in messages]
        encoding = template.encode(
            messages, tools=self._tools, documents=documents, add_generation_prompt=True, now=now, return_offsets=True,
            **self._variables,
        )
        self._stops = tuple(template.detect_response_format(**self._variables).stops)
        # What the template writes between turns, and what a model may stop with.
        self._controls = self._stops + self._control.control
        prefixes = self._prefixes(self._chat)
        self._text = prefixes.text  # with data's control tokens marked, as encoded
        self._ids = list(encoding.input_ids)
        self._sampled = [0] * len(self._ids)
        self._logprobs: list[float | None] = [None] * len(self._ids)
        self._owners = self._initial_owners(encoding.offsets or [], prefixes)
        self._prompt_tokens = len(self._ids)
        self._control_ids = {tokenizer.token_id(token) for token in self._control.control} - {None}
        # The completion waiting for extend: (first token, first character, its text).
        self._completion: tuple[int, int, str] | None = None
        self.extensions: list[Extension] = []

    # -- views -------------------------------------------------------------------------------

    @property
    def prompt_ids(self) -> list[int]:
        """The ids to send to the engine now: the whole sequence up to the open generation prompt."""
        return self._ids[: self._prompt_tokens]

    @property
    def input_ids(self) -> list[int]:
        """Every token so far: prompts, sampled completions and what the template wrote between."""
        return list(self._ids)

    @property
    def sampled_mask(self) -> list[int]:
        """1 for each token the model sampled (the RL mask), 0 for the rest."""
        return list(self._sampled)

    @property
    def logprobs(self) -> list[float | None]:
        """Per token, the logprob the engine reported for a sampled token; ``None`` elsewhere."""
        return list(self._logprobs)

    @property
    def message_index(self) -> list[int]:
        """Per token, the index in :attr:`messages` of the message it renders (a turn's closing
        tokens, sampled or not, belong to the turn); -1 for the generation prompts."""
        return list(self._owners)

    @property
    def labels(self) -> list[int]:
        """The ids where the model sampled them, -100 elsewhere (a training ``labels`` column)."""
        return [token if sampled else -100 for token, sampled in zip(self._ids, self._sampled)]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation so far, with the assistant turns as parsed (or as given)."""
        return [dict(message) for message in self._messages]

    @property
    def text(self) -> str:
        """The text of :attr:`input_ids`: what the model saw."""
        return strip_markers(self._text)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"Trajectory({len(self._messages)} messages, {len(self._ids)} tokens, {sum(self._sampled)} sampled)"

    # -- growing -------------------------------------------------------------------------------

    def add_completion(
        self, ids: Sequence[int], logprobs: Sequence[float] | None = None, message: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Append what the model sampled after :attr:`prompt_ids`, verbatim, and return the
        assistant message it is (``message`` when given, else parsed from the ids with the
        template's response format). ``logprobs``, when given, has one value per id."""
        if self._completion is not None:
            raise InputError(
                "add_completion: the last completion is not followed by new messages yet; call extend(new_messages) "
                "first (a trajectory alternates completions and extensions)"
            )
        sampled = token_ids(ids, "add_completion")
        if logprobs is not None:
            values = list(logprobs)
            if len(values) != len(sampled):
                raise InputError(
                    f"add_completion: {len(values)} logprobs for {len(sampled)} ids; give one logprob per sampled id"
                )
        else:
            values = [None] * len(sampled)
        tokenizer = self.template.tokenizer
        # Decoded after the prompt's last token: SentencePiece drops a leading space at the start.
        context = self._ids[-1:]
        before, after = tokenizer.decode(context), tokenizer.decode(context + sampled)
        text = after[len(before):] if after.startswith(before) else tokenizer.decode(sampled)
        if message is None:
            prompt = strip_markers(self._text[-_PARSE_CONTEXT:])
            body = _strip_stop(text, tokenizer.special_tokens.difference(self._stops))
            message = dict(self.template.parse_response(body, prefix=prompt, tools=self._tools, **self._variables))
        elif not isinstance(message, Mapping) or message.get("role") != "assistant":
            raise InputError(
                f"add_completion: message must be an assistant message (a dict with role 'assistant'), got {message!r:.80}"
            )
        [prepared] = self._prepare([message], "add_completion(message=...)")
        self._completion = (len(self._ids), len(self._text), text)
        owner = len(self._messages)
        self._ids.extend(sampled)
        self._sampled.extend([1] * len(sampled))
        self._logprobs.extend(values)
        self._owners.extend([owner] * len(sampled))
        self._messages.append(dict(message))
        self._chat.append(prepared)
        self._text += text
        return dict(message)

    def extend(self, new_messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Add tool results or user turns after the last completion; return the next prompt ids.

        Only the text the template writes after the sampled turn is encoded; the extension is
        classified and appended to :attr:`extensions`.
        """
        if self._completion is None:
            raise InputError(
                "extend: there is no completion to continue; give the model's sampled ids to add_completion(ids) first"
            )
        new = list(new_messages) if not isinstance(new_messages, Mapping) else [new_messages]
        if not new:
            raise InputError("extend: new_messages is empty; pass the tool results or user turn that follow the completion")
        for index, message in enumerate(new):
            if isinstance(message, Mapping) and message.get("role") == "assistant":
                raise InputError(
                    f"extend: new_messages[{index}] is an assistant message; what the model samples comes in through "
                    "add_completion(ids)"
                )
        added = self._prepare(new, "extend(new_messages)")
        start_token, start_char, sampled_text = self._completion
        follow = self._continuation(added, start_char, sampled_text)

        first = len(self._ids)
        suffix_ids, suffix_offsets, realigned = self._encode_after(follow.text, start_token, start_char)
        completed = len(self._messages) - 1
        positions = [follow.cut + start for start, _ in suffix_offsets]
        self._ids.extend(suffix_ids)
        self._sampled.extend([0] * len(suffix_ids))
        self._logprobs.extend([None] * len(suffix_ids))
        self._owners.extend(_owner(position, follow.ends, completed) for position in positions)
        self._text += follow.text
        self._messages.extend(dict(message) for message in new)
        self._chat.extend(added)
        self._prompt_tokens = len(self._ids)
        self._completion = None

        if follow.boundary != "exact" or follow.rewritten:
            extension = self._fork(first, follow.boundary)
        elif realigned is not None:
            position, rendered = realigned
            extension = Extension("realign", position, first, "exact", tuple(self._ids[position:]), tuple(rendered))
        else:
            extension = Extension("clean", None, first, "exact")
        self.extensions.append(extension)
        return self.prompt_ids

    # -- internals -----------------------------------------------------------------------------

    def _render(self, chat: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        return self.template.renderer.render(self._prepared, chat, add_generation_prompt).text

    def _prepare(self, messages: list[Any], what: str) -> list[dict[str, Any]]:
        prepared = self._prepared
        try:
            return self.template.renderer.prepare(
                messages, self._tools, None, False, False, prepared.now, self._variables, False, self._marking,
                prepared.limits,
            ).chat
        except InputError as exc:
            raise type(exc)(f"{what}: {exc}") from exc

    def _initial_owners(self, offsets: list[tuple[int, int]], prefixes: PrefixRenders) -> list[int]:
        """Each prompt token's message, from where each message ends in the prompt's render."""
        ends = self._message_ends(self._chat, prefixes, 0)
        clean = [end for end, _ in clean_positions(self._text, [(end, end) for end in ends])]
        return [_owner(start, clean, 0) for start, _ in offsets]

    def _windows(self, completed: int) -> tuple[list[int], list[int] | None, int]:
        """The messages to render before the completed turn: a window, a shorter one, and how
        many messages open them (the system message and the last user message).

        The window holds the round before the completed turn, which must render as the
        trajectory's tail did; the shorter one drops it. Either is ``None`` when it would be
        the whole conversation (which is then rendered instead)."""
        chat = self._chat
        roles = [message.get("role") for message in chat]
        head = [0] if completed > 0 and roles[0] in ("system", "developer") else []
        user = next((i for i in range(completed - 1, len(head) - 1, -1) if roles[i] == "user"), None)
        whole = list(range(completed))
        if user is None:
            return whole, None, 0
        opening = head + [user]
        previous = next((i for i in range(completed - 1, user, -1) if roles[i] == "assistant"), None)
        window = opening + list(range(previous if previous is not None else user + 1, completed))
        return window, (opening if opening != window else None), len(opening)

    def _continuation(self, added: list[dict[str, Any]], start_char: int, sampled: str) -> _Continuation:
        """What the template writes after the sampled turn, from the first of these renders that
        holds: the window, checked against the trajectory's tail; if the new messages rewrite
        history in it, the shorter window after the same check; the whole conversation; and
        last the shorter window unchecked (a turn that continues a tool round, as Gemma 4's do,
        renders after a user message too). A window that does not reproduce the tail means the
        template renders a part of the conversation differently from the whole (a counter of
        tool calls, say): the whole conversation is rendered then."""
        chat = self._chat
        completed = len(chat) - 1
        window, short, opening = self._windows(completed)
        whole = list(range(completed))
        rewritten = False
        if window != whole:
            found = self._try_window(window, opening, added, start_char, sampled)
            if isinstance(found, _Continuation):
                return found
            if found == "rewritten" and short is not None:
                rewritten = True
                found = self._try_window(short, opening, added, start_char, sampled)
                if isinstance(found, _Continuation):
                    found.rewritten = True
                    return found
        found = self._try_window(whole, 0, added, start_char, sampled)
        if isinstance(found, _Continuation):
            found.rewritten = found.rewritten or rewritten
            return found
        if found == "rewritten" and short is not None:
            found = self._try_window(short, 0, added, start_char, sampled)
            if isinstance(found, _Continuation):
                found.rewritten = True
                return found
        return self._continuation_from_end(chat + added, completed, sampled)

    def _try_window(
        self, indices: list[int], checked: int, added: list[dict[str, Any]], start_char: int, sampled: str
    ) -> _Continuation | str:
        """The continuation from one window, or why not: ``"rewritten"`` (the new messages change
        how earlier ones render), ``"differs"`` (the window does not render as the trajectory's
        tail) or ``"refused"`` (the template raised)."""
        chat = self._chat
        completed = len(chat) - 1
        before = [chat[i] for i in indices]
        after = before + [chat[completed]] + added
        try:
            prompt = self._render(before, True)
            prefixes = self._prefixes(after)
            render = prefixes.text
            if checked and not self._reproduces(before[:checked], prompt, start_char):
                return "differs"
            ends = self._message_ends(after, prefixes, len(before))
            differ = common_prefix(prompt, render)
            if differ < len(prompt):
                # Where the messages before the turn end (what the template writes after its
                # loop aside): a render departing before that rewrites history.
                told = common_prefix(self._render(before, False), self._render(after[: len(before) + 1], False))
                if differ < told:
                    return "rewritten"
        except ChatplateError:
            if len(indices) == completed:
                raise
            return "refused"
        cut, boundary = self._meet(prompt[differ:] + sampled, render, differ, ends[0])
        return _Continuation(cut, render[cut:], boundary, False, ends)

    def _continuation_from_end(self, after: list[dict[str, Any]], completed: int, sampled: str) -> _Continuation:
        """The continuation when every window rewrites earlier messages (Mistral moves the system
        prompt to the last user message): what follows the completed turn is what the whole
        render shares, from its end, with the render of the same conversation whose completed
        turn says something else."""
        prefixes = self._prefixes(after)
        render = prefixes.text
        try:
            other = self._render(after[:completed] + [_altered(after[completed])] + after[completed + 1:], True)
        except ChatplateError as exc:
            raise TrajectoryError(
                "the template renders earlier messages differently once the new messages follow, and where the "
                f"sampled turn ends cannot be found in its render ({exc}); the turn cannot be continued"
            ) from exc
        if render == other:
            raise TrajectoryError(
                "the template renders earlier messages differently once the new messages follow, and does not render "
                "the sampled turn's text; the turn cannot be continued"
            )
        cut = len(render) - common_suffix(render, other)
        close = next((stop for stop in self._stops if render.startswith(stop, cut)), None)
        if close is not None and any(sampled.endswith(token) for token in self._controls):
            cut += len(close)  # the model's stop closed the turn
        ends = [cut] + self._message_ends(after, prefixes, completed + 1)[1:]
        ends = [max(end, cut) for end in ends]
        return _Continuation(cut, render[cut:], "rewritten", True, ends)

    def _reproduces(self, opening: list[dict[str, Any]], prompt: str, start_char: int) -> bool:
        """Whether ``prompt`` (a window's render) ends as the trajectory's prompt does, from the
        window's first message after ``opening`` on."""
        opened = self._render(opening, False)
        return self._text.endswith(prompt[common_prefix(opened, prompt):], 0, start_char)

    def _meet(self, ours: str, render: str, start: int, turn_end: int) -> tuple[int, Boundary]:
        """Where in ``render`` the continuation after the sampled text begins (see the module's
        boundary rule). ``ours`` is the trajectory's text from ``start`` of ``render`` on;
        the completed turn ends at ``turn_end``."""
        same = start + common_prefix(ours, render[start:])
        if same - start == len(ours):
            return same, "exact"
        controls = self._controls
        # Texts that part inside a token (``<|user|>`` against ``</s>``) part where it begins.
        same = start + min(token_start(ours, same - start, controls), self._token_boundary(render, same) - start)
        close = _find_first(render, self._stops, same, max(same, turn_end))
        if close is not None and close[0] == same and _only_tokens(ours[same - start:], controls):
            return close[1], "stop"
        if close is None:
            return turn_end, "rewritten"  # the template wrote no end-of-turn marker
        stopped = any(ours.endswith(token) for token in controls)
        return (close[1] if stopped else close[0]), "rewritten"

    def _prefixes(self, after: list[dict[str, Any]]) -> PrefixRenders:
        """``after`` rendered with a generation prompt, recorded where the template allows, so
        that where each message ends can be read from the same render."""
        return self.template.renderer.prefixes(replace(self._prepared, chat=after, add_generation_prompt=True))

    def _message_ends(self, after: list[dict[str, Any]], prefixes: PrefixRenders, completed: int) -> list[int]:
        """Where the completed turn and each new message end in the render (the last: where the
        generation prompt begins): where the template's loop took the next message; else where
        renders of the window without a generation prompt part from it."""
        render = prefixes.text
        ends = []
        for count in range(completed + 1, len(after) + 1):
            start = prefixes.message_start(count) if count < len(after) else None
            if start is None:
                try:
                    start = self._token_boundary(render, common_prefix(self._render(after[:count], False), render))
                except ChatplateError:
                    start = ends[-1] if ends else len(render)
            ends.append(start)
        return ends

    def _token_boundary(self, text: str, position: int) -> int:
        """``position``, or the start of the token of ``text`` that spans it: two renders that
        part there may share the first characters of different markers (``<|`` of ``<|end|>``
        and ``<|return|>``), a control token's or one the tokenizer makes of the text around."""
        position = token_start(text, position, self._controls)
        low = max(0, position - _SNAP)
        encoding = self.template.tokenizer.backend.encode(text[low : position + _SNAP], add_special_tokens=False)
        for begin, end in encoding.offsets:
            if low + begin < position < low + end:
                return low + begin
        return position

    def _encode_after(
        self, suffix: str, start_token: int, start_char: int
    ) -> tuple[list[int], list[tuple[int, int]], tuple[int, list[int]] | None]:
        """The ids of ``suffix`` (marked text) after the trajectory, with each token's
        ``(start, end)`` in the marked suffix; and, where the trajectory's tokens from the last
        control token before the completion are not what the text tokenizes to, the first
        differing position and the canonical ids from there."""
        anchor_token, anchor_char = self._anchor(start_token, start_char)
        region = self._text[anchor_char:] + suffix
        [(_, canonical, offsets, _, _)] = encode_texts(
            self.template.tokenizer, [region], self._marking.data, True
        )
        ours = self._ids[anchor_token:]
        [(size, _)] = clean_positions(region, [(len(region) - len(suffix),) * 2])
        kept = len(ours)
        if canonical[:kept] == ours and (kept == len(canonical) or offsets[kept][0] >= size):
            return list(canonical[kept:]), _marked_offsets(region, offsets[kept:], len(region) - len(suffix)), None
        differ = _first_difference(ours, canonical)
        ids, offsets = self._encode_alone(suffix)
        return ids, offsets, (anchor_token + differ, list(canonical[differ:]))

    def _encode_alone(self, suffix: str) -> tuple[list[int], list[tuple[int, int]]]:
        """``suffix`` encoded on its own, after a control token so that it starts as it would
        mid-text (no SentencePiece prefix space)."""
        tokenizer = self.template.tokenizer
        lead = next((token for token in self._control.control if tokenizer.token_id(token) is not None), "")
        [(_, ids, offsets, _, _)] = encode_texts(tokenizer, [lead + suffix], self._marking.data, True)
        skip = 1 if lead and ids and ids[0] == tokenizer.token_id(lead) else 0
        return list(ids[skip:]), _marked_offsets(lead + suffix, offsets[skip:], len(lead))

    def _anchor(self, start_token: int, start_char: int) -> tuple[int, int]:
        """The last control token the template wrote before the completion: (token, character).
        Tokenizers split text at control tokens, so the text from there tokenizes on its own as
        it does in the whole."""
        tokenizer = self.template.tokenizer
        ids, text = self._ids, self._text
        for index in range(start_token - 1, -1, -1):
            if ids[index] not in self._control_ids:
                continue
            content = tokenizer.backend.id_to_token(ids[index])
            found = text.rfind(content, 0, start_char)
            while found > 0 and text[found - 1] == START:  # data's copy, encoded as text
                found = text.rfind(content, 0, found)
            if found < 0:
                break
            return index, found
        return 0, 0

    def _fork(self, first: int, boundary: Boundary) -> Extension:
        """Classify against a full re-render: where its tokenization departs from ours."""
        text = self._render(self._chat, True)
        [(_, canonical, _, _, _)] = encode_texts(self.template.tokenizer, [text], self._marking.data, False)
        canonical = list(canonical)
        ours = self._ids
        differ = _first_difference(ours, canonical)
        if differ == len(ours) == len(canonical):
            return Extension("clean", None, first, boundary)
        if strip_markers(text) == strip_markers(self._text):
            return Extension("realign", differ, first, boundary, tuple(ours[differ:]), tuple(canonical[differ:]))
        return Extension("fork", differ, first, boundary, tuple(ours[differ:]), tuple(canonical[differ:]))


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    """The first index where ``a`` and ``b`` differ (the shorter one's length if one is a prefix)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _owner(position: int, ends: Sequence[int], first: int) -> int:
    """The message a character at ``position`` belongs to: ``first + i`` for the i-th region
    (regions end at ``ends``), -1 after the last (a generation prompt)."""
    for index, end in enumerate(ends):
        if position < end:
            return first + index
    return -1


def _altered(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with every text it renders ending differently: a character no tokenizer
    merges into its neighbours and no template strips."""
    mark = "\x00"
    out = dict(message)
    for key in ("content", "reasoning_content", "thinking", "reasoning"):
        if isinstance(out.get(key), str):
            out[key] = out[key] + mark
    if isinstance(out.get("content"), list):
        parts = [dict(part) for part in out["content"]]
        texts = [part for part in parts if isinstance(part.get("text"), str)]
        if texts:
            texts[-1]["text"] += mark
        out["content"] = parts
    calls = out.get("tool_calls")
    if isinstance(calls, list):
        altered = []
        for call in calls:
            function = dict(call.get("function") or {}) if isinstance(call, dict) else {}
            arguments = function.get("arguments")
            if isinstance(arguments, dict):
                function["arguments"] = {**arguments, "_": mark}
            elif isinstance(arguments, str):
                function["arguments"] = arguments + mark
            altered.append({**call, "function": function} if isinstance(call, dict) else call)
        out["tool_calls"] = altered
    return out


def token_start(text: str, position: int, tokens: Sequence[str]) -> int:
    """``position``, or the start of one of ``tokens`` in ``text`` that spans it."""
    starts = [
        found for token in tokens
        if (found := text.find(token, max(0, position - len(token) + 1), position + len(token) - 1)) >= 0
        and found < position
    ]
    return min(starts, default=position)


def _find_first(text: str, needles: Sequence[str], start: int, end: int) -> tuple[int, int] | None:
    found = [(i, i + len(n)) for n in needles if (i := text.find(n, start, end)) >= 0]
    return min(found) if found else None


def _strip_stop(text: str, tokens: AbstractSet[str]) -> str:
    """``text`` without the special tokens it ends with (a stop other than the template's end of
    turn, which the parser does not know and would keep as content)."""
    stripped = True
    while stripped:
        stripped = False
        for token in tokens:
            if token and text.endswith(token):
                text, stripped = text[: -len(token)], True
    return text


def _only_tokens(text: str, tokens: Sequence[str]) -> bool:
    while text:
        token = next((t for t in tokens if text.startswith(t)), None)
        if token is None:
            return False
        text = text[len(token):]
    return True


def _marked_offsets(text: str, offsets: Sequence[tuple[int, int]], start: int) -> list[tuple[int, int]]:
    """Token offsets (in ``text`` without markers) as positions in marked ``text`` after ``start``."""
    if not has_markers(text):
        return [(s - start, e - start) for s, e in offsets]
    positions = [i for i, ch in enumerate(text) if ch not in MARKS]
    positions.append(len(text))
    return [(positions[s] - start, positions[e] - start) for s, e in offsets]
