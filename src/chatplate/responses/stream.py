"""A response parser that also takes token ids, decoded as they arrive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from .calls import ToolCall
from .events import ResponseEvent
from .formats import ResponseFormat
from .parser import AssistantMessage

__all__ = ["ResponseStream", "IncrementalDecoder"]

# Tokens decoded again before the new ones: enough for a SentencePiece word boundary or a
# character split over byte tokens to come out as the whole text would.
_CONTEXT = 4


class IncrementalDecoder:
    """Decode token ids chunk by chunk into exactly the text decoding them all at once gives.

    Each call decodes a few tokens of context plus the new ones and keeps only the new text;
    text that ends in an incomplete character waits for the next ids. Work per call is bounded
    by the chunk, not by the response so far.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._start = 0  # first id of the context window
        self._done = 0  # ids whose text has been returned

    def feed(self, ids: Sequence[int]) -> str:
        self._ids.extend(int(i) for i in ids)
        return self._take(final=False)

    def flush(self) -> str:
        return self._take(final=True)

    def _take(self, *, final: bool) -> str:
        if self._done == len(self._ids):
            return ""
        decode = self._tokenizer.decode
        before = decode(self._ids[self._start:self._done], skip_special_tokens=False)
        text = decode(self._ids[self._start:], skip_special_tokens=False)
        if not final and (text.endswith("\ufffd") or not text.startswith(before)):
            return ""  # a character still split over byte tokens
        self._done = len(self._ids)
        self._start = max(0, self._done - _CONTEXT)
        return text[len(before):]


class ResponseStream:
    """Feed text or token ids; get events; ``finish()`` returns the message.

    Made by :meth:`chatplate.ChatTemplate.response_parser`.
    """

    def __init__(self, parser: Any, tokenizer: Any | None) -> None:
        self._parser = parser
        self._tokenizer = tokenizer
        self._decoder: IncrementalDecoder | None = None

    def feed(self, chunk: str | Sequence[int]) -> list[ResponseEvent]:
        """Take the next piece of the response (text, or token ids with the attached tokenizer)."""
        if isinstance(chunk, str):
            if self._decoder is not None:
                raise InputError("feed(): this stream started with token ids; keep feeding ids")
            return self._parser.feed(chunk)
        if self._decoder is None:
            if self._tokenizer is None:
                raise InputError("feed(): token ids need a tokenizer; load the template from a model directory "
                                 "with a tokenizer.json, or feed the decoded text")
            self._decoder = IncrementalDecoder(self._tokenizer)
        return self._parser.feed(self._decoder.feed(chunk))

    def close(self) -> list[ResponseEvent]:
        """End the response; return the events its end completes (then ``finish()``)."""
        events = self._flush()
        closing = getattr(self._parser, "close", None)
        if closing is not None:
            events += closing()
        else:
            self._parser.finish()
        return events

    def finish(self) -> dict[str, Any]:
        """End the response and return the assistant message."""
        self._flush()
        return _as_message(self._parser.finish())

    def _flush(self) -> list[ResponseEvent]:
        rest = self._decoder.flush() if self._decoder is not None else ""
        return self._parser.feed(rest) if rest else []

    def parse(self, response: str) -> dict[str, Any]:
        """Parse a whole response: ``feed`` then ``finish``."""
        self.feed(response)
        return self.finish()


# What a transformers response_template's parse is reported as.
_RESPONSE_TEMPLATE = ResponseFormat("response_template", reason="the model's response_template (tokenizer_config.json), "
                                    "parsed as transformers parses it")


def _as_message(result: dict[str, Any]) -> AssistantMessage:
    """A response_template's plain dict, with the attributes chatplate's own parse carries."""
    if isinstance(result, AssistantMessage):
        return result
    message = AssistantMessage(result)
    message.calls = [
        ToolCall(call.get("function", call).get("name"), call.get("function", call).get("arguments", {}), call.get("id"))
        for call in result.get("tool_calls") or () if isinstance(call, dict)
    ]
    message.stop, message.trailing, message.reasoning_closed = None, "", True
    message.format = _RESPONSE_TEMPLATE
    return message
