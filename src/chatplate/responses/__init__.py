"""Parsing what a model generates back into the assistant message a template renders.

The format comes from the template (``detection``), as data (``formats``); one streaming state
machine (``parser``) reads every format; tool calls keep a status and their raw text (``calls``).
"""

from ..messages import REASONING_FIELDS
from . import events
from .calls import ToolCall
from .detection import detect_format
from .events import *  # noqa: F403 - the event types, listed once in events.__all__
from .formats import ResponseFormat
from .parser import AssistantMessage, ResponseParser

__all__ = ["AssistantMessage", "ResponseParser", "ResponseFormat", "ToolCall", "detect_format", "REASONING_FIELDS"]
__all__ += events.__all__
