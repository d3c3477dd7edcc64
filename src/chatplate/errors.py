"""The chatplate exception tree.

::

    ChatplateError
     ├── InputError (ValueError)          bad arguments or data passed to a call
     │    ├── ConversationError           the conversation or one of its messages (index, field)
     │    ├── DocumentsError              documents that are not dicts (index)
     │    ├── ToolSchemaError             a Python function that cannot become a tool schema
     │    ├── ContinuationError           continue_final_message cannot be honoured
     │    ├── TruncationError             a prompt cannot fit max_length (max_length, shortest)
     │    ├── RecordError                 a dataset record that is no conversation (reason, row)
     │    └── ResponseFormatError         a response format spec or response_template is invalid (key)
     ├── TemplateError                    the template itself failed
     │    ├── TemplateSyntaxError         does not compile (line, column, excerpt with a caret)
     │    ├── TemplateRuntimeError        failed while rendering (line)
     │    │    └── TemplateSecurityError  the sandbox stopped an unsafe operation
     │    ├── TemplateResourceError       a render went past a limit (limit, value, maximum)
     │    ├── TemplateRaisedError         the template called raise_exception(message)
     │    ├── MaskError                   the trained part of a turn cannot be found (index)
     │    └── TrajectoryError             a sampled turn cannot be continued by the template
     ├── SourceError                      a template could not be loaded
     │    ├── TemplateNotFoundError (LookupError)   nothing found where we looked (looked_for)
     │    │    └── UnknownBuiltinError    no built-in by that name (suggestions)
     │    └── CorruptSourceError          a file exists but cannot be read as what it claims (path)
     └── MissingDependencyError (ImportError)    an optional extra is not installed (extra)

    ChatplateWarning (UserWarning)
     ├── MissingBosWarning                a prompt lacks the BOS the tokenizer adds to other input
     ├── TokenizerClassWarning            transformers would build the tokenizer differently
     ├── TokenizerBackendWarning          fastokens was asked for but cannot be used exactly
     ├── DefaultTemplateWarning           a source had no template and the fallback was used
     ├── UnusedVariableWarning            a keyword argument the template never reads
     ├── RejectedRowsWarning              prepare_dataset left rows out (counted by reason)
     └── SingleProcessWarning             prepare ran in one process (unguarded __main__)

Every error carries its context as attributes (``None`` when unknown) and survives pickling,
so worker processes can send them back unchanged. Where a message names a setting, it does so
through a :class:`Fix`, so the command line can say it its own way (``--limit`` rather than
``limits=``): ``str(error)`` is the Python wording, ``error.for_cli()`` the command line's.

Silence every chatplate warning with
``warnings.filterwarnings("ignore", category=chatplate.ChatplateWarning)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Fix",
    "ChatplateError",
    "InputError",
    "ConversationError",
    "DocumentsError",
    "ToolSchemaError",
    "ContinuationError",
    "TruncationError",
    "RecordError",
    "ResponseFormatError",
    "TemplateError",
    "TemplateSyntaxError",
    "TemplateRuntimeError",
    "TemplateSecurityError",
    "TemplateResourceError",
    "TemplateRaisedError",
    "MaskError",
    "TrajectoryError",
    "SourceError",
    "TemplateNotFoundError",
    "UnknownBuiltinError",
    "CorruptSourceError",
    "MissingDependencyError",
    "ChatplateWarning",
    "MissingBosWarning",
    "TokenizerClassWarning",
    "TokenizerBackendWarning",
    "DefaultTemplateWarning",
    "UnusedVariableWarning",
    "RejectedRowsWarning",
    "SingleProcessWarning",
]


def _rebuild(cls: type[ChatplateError], message: str, context: dict[str, Any]) -> ChatplateError:
    return cls(message, **context)


@dataclass(frozen=True)
class Fix:
    """A setting a message names (usually the one that resolves the error), said in Python and
    on the command line. The message writes ``{fix}`` where it goes.

    >>> error = InputError("too big; raise it: {fix}", fix=Fix("limits=Limits(max_work=...)", "--limit max_work=N"))
    >>> str(error), error.for_cli()
    ('too big; raise it: limits=Limits(max_work=...)', 'too big; raise it: --limit max_work=N')
    """

    python: str
    cli: str


class ChatplateError(Exception):
    """Base class of every error chatplate raises on purpose.

    ``str(error)`` is the complete, human-readable message; the keyword arguments given at
    construction are kept as attributes so programs can act on them.
    """

    fix: Fix | None = None

    def __init__(self, message: str, **context: Any) -> None:
        fix = context.get("fix")
        self._unfixed = message
        self.message = message.replace("{fix}", fix.python) if fix is not None else message
        super().__init__(self.message)
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message

    def for_cli(self) -> str:
        """The message with the command line's advice (``--name`` rather than ``name=``)."""
        return self._unfixed.replace("{fix}", self.fix.cli) if self.fix is not None else self.message

    def prefixed(self, text: str, **context: Any) -> ChatplateError:
        """The same error with ``text`` before its message and ``context`` added (its
        :class:`Fix` kept), for a caller that knows more about where it happened."""
        return type(self)(text + self._unfixed, **{**self.context, **context})

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._unfixed, self.context))


class InputError(ChatplateError, ValueError):
    """An argument or a piece of data passed to chatplate is not acceptable."""


class ConversationError(InputError, TypeError):
    """The conversation is not a non-empty list of message mappings.

    Attributes: ``index`` (message index or ``None``), ``field`` (message key or ``None``).
    """

    index: int | None = None
    field: str | None = None


class DocumentsError(InputError, TypeError):
    """``documents`` is not an iterable of dicts. Attribute ``index``: the document at fault."""

    index: int | None = None


class ToolSchemaError(InputError, TypeError):
    """A tool given as a Python function cannot be converted to a JSON schema.

    Attributes: ``function`` (its name), ``argument`` (the argument at fault, if any).
    """

    function: str | None = None
    argument: str | None = None


class ContinuationError(InputError, TypeError):
    """``continue_final_message`` cannot be applied to this conversation and template.

    A ``TypeError`` too: the reference raises that when the text to continue is not a string.
    """

    field: str | None = None


class TruncationError(InputError):
    """The prompt cannot be made to fit ``max_length`` with the chosen truncation."""

    max_length: int | None = None
    shortest: int | None = None


class RecordError(InputError):
    """A dataset record that cannot become a training conversation. ``reason`` is the short code
    counted in the run's summary (``unknown_format``, ``bad_role``, ...); ``row`` is the record's
    row in the input, counted from 0, when known; ``line`` its 1-based line in a JSONL file."""

    reason: str | None = None
    row: int | None = None
    line: int | None = None


class ResponseFormatError(InputError):
    """A response format (a chatplate spec or a transformers ``response_template``) is invalid,
    or a response cannot be parsed because no format is known. ``key`` names the spec entry at
    fault, when there is one."""

    key: str | None = None


class TemplateError(ChatplateError):
    """The template failed to compile or to render.

    Attributes: ``template_name`` (which named template, or the source it came from) and
    ``lineno`` (1-based template line, when known).
    """

    template_name: str | None = None
    lineno: int | None = None


class TemplateSyntaxError(TemplateError):
    """The template is not valid Jinja. ``column`` is 1-based when known; ``excerpt`` shows the
    offending line with a caret under the column."""

    column: int | None = None
    excerpt: str | None = None


class TemplateRuntimeError(TemplateError):
    """The template raised an error while rendering (undefined call, bad operand, ...)."""


class TemplateSecurityError(TemplateRuntimeError):
    """The sandbox refused an operation the template attempted."""


class TemplateResourceError(TemplateError):
    """A render went past one of its :class:`chatplate.Limits` (an endless loop, a string built
    larger than memory, runaway recursion, oversized input). ``limit`` names the bound
    (``"max_work"``...), ``value`` is what was reached and ``maximum`` the bound itself."""

    limit: str | None = None
    value: int | float | None = None
    maximum: int | float | None = None


class TemplateRaisedError(TemplateError):
    """The template called ``raise_exception(message)``; ``str(error)`` is that message verbatim."""


class MaskError(TemplateError):
    """Training masks cannot be derived for a turn: the template does not render the
    conversation up to that turn, or renders the turn differently once later turns exist, so
    what the model produces for it cannot be located. ``index`` is the message's."""

    index: int | None = None


class TrajectoryError(TemplateError):
    """A trajectory cannot be extended: the template renders the conversation so that where the
    sampled turn ends cannot be found (it rewrites earlier messages once new ones follow, and no
    shorter window of the conversation renders the turn on its own)."""


class SourceError(ChatplateError):
    """A template source could not be loaded. Attribute ``source``: what was asked for."""

    source: str | None = None


class TemplateNotFoundError(SourceError, LookupError):
    """No chat template was found. ``looked_for`` lists the places that were searched."""

    looked_for: list[str] | None = None


class UnknownBuiltinError(TemplateNotFoundError):
    """No built-in template has this name. ``suggestions`` lists close matches."""

    suggestions: list[str] | None = None


class CorruptSourceError(SourceError):
    """A file was found but cannot be read as a template source. Attribute ``path``."""

    path: str | None = None


class MissingDependencyError(ChatplateError, ImportError):
    """An optional dependency is needed. ``extra`` names the ``pip install chatplate[extra]``."""

    extra: str | None = None
    package: str | None = None


# -- warnings ------------------------------------------------------------------------------------


class ChatplateWarning(UserWarning):
    """Base class of every warning chatplate issues."""


class MissingBosWarning(ChatplateWarning):
    """The prompt does not start with the BOS token the tokenizer's post-processor would add.

    Fine-tuned templates often forget ``{{ bos_token }}``; the model then sees input unlike its
    training data. Add the BOS to the template, or ignore this if the model wants none. Issued
    once per template; ``Encoding.missing_bos`` tells for every prompt.
    """


class TokenizerClassWarning(ChatplateWarning):
    """transformers would build this tokenizer with a class whose pipeline chatplate does not
    reproduce; ``tokenizer.json`` is used as it is, so ids may differ from transformers'."""


class TokenizerBackendWarning(ChatplateWarning):
    """``fastokens`` was asked for, but this tokenizer is encoded with ``tokenizers``: its pipeline
    is one the fast path does not reproduce, or the load-time check found a difference."""


class DefaultTemplateWarning(ChatplateWarning):
    """A source had no chat template and ``load(..., fallback=...)`` used a built-in instead.

    transformers once did this silently with a class-level "default chat template"; chatplate
    does it only when asked, and says so.
    """


class UnusedVariableWarning(ChatplateWarning):
    """A keyword argument was passed that the template never reads (often a misspelling, such as
    ``enable_thinkng``); the message names the closest variable the template does read."""


class RejectedRowsWarning(ChatplateWarning):
    """:func:`chatplate.prepare_dataset` left rows out (the message counts them by reason)."""


class SingleProcessWarning(ChatplateWarning):
    """``prepare`` ran in one process because worker processes would re-run the calling script:
    the call is not under ``if __name__ == "__main__":``."""
