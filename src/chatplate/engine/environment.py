"""The Jinja environment chat templates run in, identical to the one transformers builds.

Differences from transformers are deliberate and invisible to templates: the clock read by
``strftime_now`` and the generation-span tracker are per call (on the render's budget, and in a
context variable), so one compiled template can serve many threads and frozen clocks at once; and ``ChatSandbox`` reaches
the stock sandbox's decisions with less work (``tests/unit/test_sandbox.py`` compares the two).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
import jinja2.runtime
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .budget import CALL_UNITS, Budget, state
from .codegen import FREE_TAILS, GUARDED_BINOPS, GuardedCodeGenerator
from .filters import STR_METHOD_GUARDS, bounded_filters, bounded_join, bounded_lipsum, check_str_format, tojson
from .guards import container, iterate, sized
from .recording import Log, RecordedMessages, Recording



class SpanTracker:
    """Collects `{% generation %}` spans while a template is being generated.

    ``emitted`` counts the characters already yielded by ``Template.generate``; a generation
    block's span starts there, exactly as transformers measures it (so blocks inside macros get
    the same offsets the reference reports).
    """

    __slots__ = ("emitted", "spans")

    def __init__(self) -> None:
        self.emitted = 0
        self.spans: list[tuple[int, int]] = []


_tracker: ContextVar[SpanTracker | None] = ContextVar("chatplate_span_tracker", default=None)


class GenerationExtension(jinja2.ext.Extension):
    """The ``{% generation %}...{% endgeneration %}`` block: renders its body unchanged and, when
    spans are being tracked, records where that body lands in the output."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation", []), [], [], body).set_lineno(lineno)

    def _generation(self, caller: jinja2.runtime.Macro) -> str:
        if caller.caller or caller.catch_kwargs or caller.catch_varargs or caller._default_autoescape:
            rendered = caller()
        else:
            # What Macro.__call__ ends in for a body that takes no arguments (it names no
            # `caller`, `kwargs` or `varargs`) and is not escaped, without its argument binding.
            rendered = caller._func()
        tracker = _tracker.get()
        if tracker is not None:
            tracker.spans.append((tracker.emitted, tracker.emitted + len(rendered)))
        return rendered


class TemplateRaise(jinja2.exceptions.TemplateError):
    """Raised by the template's own ``raise_exception``; kept apart from jinja2's errors so the
    translation layer can show the message verbatim."""


def _raise_exception(message: Any) -> None:
    raise TemplateRaise(message)


def _strftime_now(format: str) -> str:
    if state.log is not None:
        state.log.clock_read = True
    budget = state.budget
    now = budget.now if budget is not None else None
    return (now if now is not None else datetime.now()).strftime(format)


class _TemplateDict:
    # `dict` for templates without exposing the type itself (no `dict.__subclasses__` games).
    # What it builds is measured like a literal (`dict.fromkeys(range(n), x)` holds x n times).
    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return container(dict(*args, **kwargs))

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return container(dict.fromkeys(*args, **kwargs))


class _TemplateNamespace(jinja2.utils.Namespace):
    # Underscore-prefixed attributes are refused so a namespace cannot reach Python internals.
    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - mirrors jinja2's signature trick
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"Chat templates cannot store underscore-prefixed attributes on a namespace, but got {name!r}. "
                "Please rename the attribute."
            )


class _RecordingNamespace(_TemplateNamespace):
    """``namespace()`` in a recorded render: notes which attributes are read and written, when."""

    def __getattribute__(self, name: str) -> Any:
        if name[:1] != "_":
            log = object.__getattribute__(self, "_log")
            log.clock += 1
            log.reads.append((log.clock, (self, name)))
        return _TemplateNamespace.__getattribute__(self, name)

    def __setitem__(self, name: str, value: Any) -> None:
        log = object.__getattribute__(self, "_log")
        log.clock += 1
        log.writes.setdefault((self, name), []).append(log.clock)
        _TemplateNamespace.__setitem__(self, name, value)

    @classmethod
    def bound(cls, log: Log) -> Any:
        """The ``namespace`` global for one recorded render."""

        def namespace(*args: Any, **kwargs: Any) -> _RecordingNamespace:
            made = cls.__new__(cls)
            # Outside the namespace's attributes, so templates neither see nor print it.
            object.__setattr__(made, "_log", log)
            _TemplateNamespace.__init__(made, *args, **kwargs)
            return made

        return namespace


# The exact builtin types templates mostly touch. Their instances have no __dict__ and their
# classes cannot change, so whether `obj.attr` exists and whether the sandbox allows it depends
# only on (type, attr): the verdict can be computed once and reused for every render.
_PLAIN_TYPES = frozenset((str, dict, list, tuple, int, float, bool, type(None)))
_MISSING, _SAFE, _SLOW = 0, 1, 2
# Names can come from message data (`message[key]`), so the cache must not grow without bound.
_MAX_VERDICTS = 4096
_BuiltinMethod = type("".strip)
_METHOD_TYPES = (_BuiltinMethod, types.MethodType)


def _context_free(functions: dict[str, Any], name: Any) -> Any:
    """The named test or filter if it takes no context, else None.

    For those, jinja2's generic dispatch always ends in a direct call with the same arguments.
    """
    func = functions.get(name) if type(name) is str else None
    return None if func is None or hasattr(func, "jinja_pass_arg") else func


class ChatSandbox(ImmutableSandboxedEnvironment):
    """``ImmutableSandboxedEnvironment`` with cached verdicts for plain builtin types, and bounds.

    Every decision is the one the parent class makes; only the work of reaching it is cached.
    Anything unusual (a ``str.format`` method, an unsafe attribute, any other type) takes the
    parent's own path, so errors and ``Undefined`` objects are the parent's too.

    Bounds (see ``budget.py``): the code generator routes growing operators and loops through
    guards, and this class charges macro calls and recursive loops, and checks the ``str``
    methods that can build large strings before they run.
    """

    code_generator_class = GuardedCodeGenerator
    # Never folded at compile time (`{{ 'a' * 10 ** 10 }}` would run inside ChatTemplate(...)).
    intercepted_binops = GUARDED_BINOPS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._verdicts: dict[tuple[type, str], int] = {}
        self._plain_callables: dict[int, Any] | None = None

    def _plain_callable(self, obj: Any) -> bool:
        """True for our own globals that the parent would call as they are (safe, no context)."""
        known = self._plain_callables
        if known is None:
            known = self._plain_callables = {
                id(value): value
                for value in self.globals.values()
                if callable(value)
                and self.is_safe_callable(value)
                and getattr(value, "jinja_pass_arg", None) is None
                and getattr(getattr(value, "__call__", None), "jinja_pass_arg", None) is None
            }
        return known.get(id(obj)) is obj

    def _verdict(self, kind: type, attribute: str) -> int:
        key = (kind, attribute)
        verdict = self._verdicts.get(key)
        if verdict is None:
            sample = kind()
            if not hasattr(sample, attribute):
                verdict = _MISSING
            else:
                value = getattr(sample, attribute)
                safe = self.is_safe_attribute(sample, attribute, value) and self.wrap_str_format(value) is None
                verdict = _SAFE if safe else _SLOW
            if len(self._verdicts) < _MAX_VERDICTS:
                self._verdicts[key] = verdict
        return verdict

    def call_test(
        self,
        name: str,
        value: Any,
        args: Any = None,
        kwargs: Any = None,
        context: Any = None,
        eval_ctx: Any = None,
    ) -> Any:
        # select/reject/selectattr call tests per item.
        func = _context_free(self.tests, name)
        if func is None:
            return super().call_test(name, value, args, kwargs, context, eval_ctx)
        return func(value, *(args if args is not None else ()), **(kwargs if kwargs is not None else {}))

    def call_filter(
        self,
        name: str,
        value: Any,
        args: Any = None,
        kwargs: Any = None,
        context: Any = None,
        eval_ctx: Any = None,
    ) -> Any:
        # map('trim') and friends call filters per item.
        func = _context_free(self.filters, name)
        if func is None:
            return super().call_filter(name, value, args, kwargs, context, eval_ctx)
        return func(value, *(args if args is not None else ()), **(kwargs if kwargs is not None else {}))

    def getattr(self, obj: Any, attribute: str) -> Any:
        kind = type(obj)
        if kind in _PLAIN_TYPES and type(attribute) is str:
            verdict = self._verdict(kind, attribute)
            if verdict == _SAFE:
                return getattr(obj, attribute)
            if verdict == _MISSING:
                if kind is dict:
                    try:
                        return obj[attribute]
                    except (TypeError, LookupError):
                        pass
                return self.undefined(obj=obj, name=attribute)
        elif kind in _OPEN_TYPES and type(attribute) is str and attribute[:1] != "_":
            # `loop.*` and namespace attributes: for these classes the parent allows any
            # name without a leading underscore; only a bound str.format needs its wrapper.
            try:
                value = getattr(obj, attribute)
            except AttributeError:
                pass
            else:
                if not isinstance(value, _METHOD_TYPES):
                    return value
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        kind = type(obj)
        if kind is str and type(argument) is str:
            # Indexing a string with a string always fails; skip straight to the fallback.
            if self._verdict(str, argument) == _MISSING:
                return self.undefined(obj=obj, name=argument)
        elif kind in _PLAIN_TYPES:
            try:
                return obj[argument]
            except (TypeError, LookupError):
                # The parent falls back to an attribute of that name; for a name the type
                # does not have, that ends in Undefined without raising anything.
                if type(argument) is str and self._verdict(kind, argument) == _MISSING:
                    return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        # Builtin methods of plain values (str.strip, dict.items, ...), macros and our own
        # globals are never unsafe, and their context needs are fixed (macros take the eval
        # context), so the parent's checks would always end in the same direct call.
        kind = type(__obj)
        budget = None
        if kind is _BuiltinMethod and type(__obj.__self__) in _PLAIN_TYPES:
            if type(__obj.__self__) is str and __obj.__name__ in STR_METHOD_GUARDS:
                kwargs.pop("_block_vars", None)
                kwargs.pop("_loop_vars", None)
                return sized(STR_METHOD_GUARDS[__obj.__name__](__obj.__self__, __obj, args, kwargs))
            prefix: tuple[Any, ...] = ()
        elif kind is jinja2.runtime.Macro:
            prefix = (__context.eval_ctx,)
            budget = state.budget
            if budget is not None:
                # Macros (and `caller()`) are the template's functions: each call is work and one
                # level of nesting (the common case inline: this runs for every macro call).
                depth, work = budget.depth, budget.work + CALL_UNITS
                if depth < budget.max_depth and work < budget.checkpoint:
                    budget.depth, budget.work = depth + 1, work
                else:
                    budget.deeper()
        elif __self._plain_callable(__obj) or getattr(__obj, "__func__", None) is GenerationExtension._generation:
            # (The {% generation %} block calls our extension's method: safe, no context.)
            prefix = ()
        elif kind is jinja2.runtime.LoopContext and args and state.budget is not None:
            # `loop(children)` in a recursive for loop: one level deeper, its items charged.
            budget = state.budget
            budget.deeper()
            try:
                return super().call(__context, __obj, iterate(args[0]), *args[1:], **kwargs)
            finally:
                budget.depth -= 1
        else:
            return super().call(__context, __obj, *args, **kwargs)
        kwargs.pop("_block_vars", None)
        kwargs.pop("_loop_vars", None)
        try:
            return __obj(*prefix, *args, **kwargs)
        except StopIteration:
            return __context.environment.undefined(
                "value was undefined because a callable raised a StopIteration exception"
            )
        finally:
            if budget is not None:
                budget.depth -= 1

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """An attribute the sandbox refuses raises at once, instead of jinja2's undefined value
        that prints as nothing: no real template reaches for one, and one that tries is hostile."""
        raise jinja2.exceptions.SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe: chat templates "
            "cannot reach Python internals"
        )

    def wrap_str_format(self, value: Any) -> Any:
        """The sandbox's ``str.format``, refusing field widths that build more than the limits."""
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        template = value.__self__

        @functools.wraps(wrapper)
        def bounded_format(*args: Any, **kwargs: Any) -> Any:
            if value.__name__ == "format_map" and len(args) == 1 and isinstance(args[0], dict):
                check_str_format(template, (), args[0])
            else:
                check_str_format(template, args, kwargs)
            return sized(wrapper(*args, **kwargs))

        return bounded_format


# Classes that are neither callables, types, frames nor mutable containers, for which the
# parent's is_safe_attribute therefore reduces to "no leading underscore".
_OPEN_TYPES = frozenset((jinja2.runtime.LoopContext, _TemplateNamespace))


def build_environment() -> ImmutableSandboxedEnvironment:
    """The sandboxed environment every chat template is compiled in."""
    env = ChatSandbox(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[GenerationExtension, jinja2.ext.loopcontrols],
    )
    env.filters = bounded_filters(env.filters)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    env.globals["lipsum"] = bounded_lipsum
    # What the generated code joins macro and block output with.
    env.concat = bounded_join  # type: ignore[method-assign]
    return env


ENVIRONMENT = build_environment()


def render(template: jinja2.Template, variables: dict[str, Any], budget: Budget) -> str:
    """Render within ``budget`` (its limits and its clock for ``strftime_now``)."""
    return _run(template, variables, budget, [])


def record(template: jinja2.Template, variables: dict[str, Any], budget: Budget) -> Recording | None:
    """:func:`render`, recording what the template does with ``messages`` (a list), so that the
    renders of prefixes of the conversation can be told from this one (see ``recording.py``);
    ``None`` if a variable replaces the ``namespace`` the recording watches."""
    if "namespace" in variables:
        return None
    pieces: list[str] = []
    log = Log(pieces)
    recorded = dict(variables)
    recorded["messages"] = RecordedMessages(variables["messages"], log)
    recorded["namespace"] = _RecordingNamespace.bound(log)
    previous, state.log = state.log, log
    try:
        return Recording(_run(template, recorded, budget, pieces), log, template.root_render_func.__globals__[FREE_TAILS])
    finally:
        state.log = previous


def _run(template: jinja2.Template, variables: dict[str, Any], budget: Budget, pieces: list[str]) -> str:
    # The output is collected where the budget can see it grow while the template runs.
    budget.pieces = pieces
    previous, state.budget = state.budget, budget
    try:
        context = template.new_context(variables)
        try:
            pieces.extend(template.root_render_func(context))
        except Exception:  # noqa: BLE001 - jinja2 rewrites the traceback to template lines
            ENVIRONMENT.handle_exception()
    finally:
        state.budget = previous
    # Counted at every checkpoint while rendering, so what is left to count here is small.
    text = "".join(pieces)
    budget.written(len(text))
    return text


def render_with_spans(template: jinja2.Template, variables: dict[str, Any], budget: Budget) -> tuple[str, list[tuple[int, int]]]:
    """Render and return the ``{% generation %}`` spans as half-open character offsets."""
    tracker = SpanTracker()
    tracker_token = _tracker.set(tracker)
    previous, state.budget = state.budget, budget
    pieces: list[str] = []
    try:
        blocks: Iterator[str] = template.generate(variables)
        for block in blocks:
            pieces.append(block)
            tracker.emitted += len(block)
            if tracker.emitted > budget.max_chars:
                budget.written(tracker.emitted)
    finally:
        state.budget = previous
        _tracker.reset(tracker_token)
    return "".join(pieces), tracker.spans
