"""Chat with a model: render with chatplate, generate with a backend, parse, append."""

from .backends import Backend, LlamaCppBackend, OpenAIBackend, Sampling, TransformersBackend, backend_for
from .conversation import Chat, ToolResult, TurnDone

__all__ = [
    "Chat",
    "ToolResult",
    "TurnDone",
    "Sampling",
    "Backend",
    "TransformersBackend",
    "LlamaCppBackend",
    "OpenAIBackend",
    "backend_for",
]
