"""Compiling templates once, and translating jinja2's errors into chatplate's at one choke point."""

from __future__ import annotations

import functools
import re
import threading
import types
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import jinja2
import jinja2.lexer
import jinja2.nodes

from ..errors import (
    TemplateError,
    TemplateRaisedError,
    TemplateResourceError,
    TemplateRuntimeError,
    TemplateSecurityError,
    TemplateSyntaxError,
)
from ..limits import LIMIT_NAMES, raise_limit
from .budget import LimitExceeded
from .environment import ENVIRONMENT, TemplateRaise

_CACHE_SIZE = 256
_cache: OrderedDict[str, jinja2.Template] = OrderedDict()
_cache_lock = threading.Lock()


def compile_template(source: str, template_name: str | None = None) -> jinja2.Template:
    """Compile ``source`` in the chat-template environment, once per distinct source.

    Raises :class:`chatplate.errors.TemplateSyntaxError` with line, column and an excerpt.
    """
    with _cache_lock:
        compiled = _cache.get(source)
        if compiled is not None:
            _cache.move_to_end(source)
            return compiled
    try:
        compiled = ENVIRONMENT.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(source, exc, template_name) from None
    except (RecursionError, MemoryError, SyntaxError, ValueError, OverflowError) as exc:
        raise _compile_failure(exc, template_name) from exc
    # jinja2 keeps globals as a ChainMap over the environment's, re-flattened on every render;
    # ours never change after start-up, so flatten once.
    compiled.globals = dict(compiled.globals)
    with _cache_lock:
        _cache[source] = compiled
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


@functools.lru_cache(maxsize=256)
def literal_text(source: str) -> str:
    """Every literal string of a template (its text and string constants), joined with NULs so a
    search cannot match across two of them."""
    ast = ENVIRONMENT.parse(source)
    literals = {node.data for node in ast.find_all(jinja2.nodes.TemplateData)}
    literals |= {node.value for node in ast.find_all(jinja2.nodes.Const) if isinstance(node.value, str)}
    return "\0".join(sorted(literals))


@functools.lru_cache(maxsize=256)
def read_variables(source: str) -> frozenset[str]:
    """The variables a template reads from its context (through any construct: ``is defined``,
    ``| default``, inside macros), as jinja2 finds them."""
    import jinja2.meta

    return frozenset(jinja2.meta.find_undeclared_variables(ENVIRONMENT.parse(source)))


@functools.lru_cache(maxsize=256)
def has_generation_blocks(source: str) -> bool:
    """Whether the template marks assistant output with ``{% generation %}`` blocks."""
    ast = ENVIRONMENT.parse(source)
    return any(
        isinstance(node.call.node, jinja2.nodes.ExtensionAttribute) and node.call.node.name == "_generation"
        for node in ast.find_all(jinja2.nodes.CallBlock)
    )


def _syntax_error(source: str, exc: jinja2.TemplateSyntaxError, template_name: str | None) -> TemplateSyntaxError:
    lineno = exc.lineno
    lines = _NEWLINE.split(source)
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    column = _error_column(source, lines, lineno, exc.message or "")
    where = f"{template_name}, line {lineno}" if template_name else f"line {lineno}"
    if column is not None:
        where += f", column {column}"
    excerpt = f"    {line}\n    {' ' * ((column or 1) - 1)}^" if line.strip() else None
    message = f"template syntax error at {where}: {exc.message}"
    if excerpt:
        message += "\n" + excerpt
    message += "\nFix the template's Jinja syntax (see https://jinja.palletsprojects.com/templates/)."
    return TemplateSyntaxError(
        message, template_name=template_name, lineno=lineno, column=column, excerpt=excerpt, reason=exc.message
    )


_NEWLINE = re.compile(r"\r\n|\r|\n")  # how jinja2 counts lines


def _error_column(source: str, lines: list[str], lineno: int, message: str) -> int | None:
    """Best-effort 1-based column of the token the parser stopped at.

    jinja2 reports only lines. We parse again over an instrumented token stream that remembers
    where on its line each token was found, then look up the token the parser failed on.
    """
    where: dict[int, tuple[int, int]] = {}
    last: list[tuple[int, int]] = [(1, 1)]
    lexer_stop: list[tuple[int, int]] = []  # set when the lexer itself fails: just past the last token

    def raw_tokens() -> Iterator[tuple[int, str, str]]:
        line_no, pos = 0, 0
        try:
            for tok_line, tok_type, value in ENVIRONMENT.lexer.tokeniter(source, None):
                if tok_line != line_no:
                    line_no, pos = tok_line, 0
                text_lines = _NEWLINE.split(str(value))
                line = lines[tok_line - 1] if 0 < tok_line <= len(lines) else ""
                found = line.find(text_lines[0], pos) if text_lines[0] else pos
                last[0] = (tok_line, (found if found >= 0 else pos) + 1)
                if len(text_lines) > 1:
                    line_no, pos = tok_line + len(text_lines) - 1, len(text_lines[-1])
                elif found >= 0:
                    pos = found + len(text_lines[0])
                yield tok_line, tok_type, value
        except jinja2.TemplateSyntaxError:
            lexer_stop.append((line_no, pos + 1))
            raise

    def tokens() -> Iterator[jinja2.lexer.Token]:
        for token in ENVIRONMENT.lexer.wrap(raw_tokens()):
            where[id(token)] = last[0]
            yield token

    parser = jinja2.parser.Parser(ENVIRONMENT, source)
    parser.stream = jinja2.lexer.TokenStream(tokens(), None, None)
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    try:
        parser.parse()
    except jinja2.TemplateSyntaxError:
        pass
    else:
        # It parsed, so the compiler refused a name (an unknown filter or test): point at it.
        named = re.search(r"'([^']+)'", message)
        found = line.find(named.group(1)) if named else -1
        return found + 1 if found >= 0 else _first_non_space(line)
    if lexer_stop:
        tok_line, col = lexer_stop[0]
        if tok_line == lineno:
            return col
    current = parser.stream.current
    if current.type == jinja2.lexer.TOKEN_EOF and current.lineno == lineno:
        return len(line) + 1
    tok_line, col = where.get(id(current), last[0])
    return col if tok_line == lineno else _first_non_space(line)


def _first_non_space(line: str) -> int | None:
    return len(line) - len(line.lstrip()) + 1 if line.strip() else None


def _compile_failure(exc: BaseException, template_name: str | None) -> TemplateError:
    """The template parsed as Jinja, but Python could not build it: nesting deeper than Python's
    parser or compiler allow, a literal too large to hold, or a construct Python refuses."""
    where = f" ({template_name})" if template_name else ""
    detail = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
    if isinstance(exc, (RecursionError, MemoryError)) or (isinstance(exc, SyntaxError) and _TOO_DEEP.search(detail)):
        return TemplateResourceError(
            f"the template{where} nests blocks or expressions too deeply to compile ({detail}); real chat "
            "templates nest a few levels: this template is broken or hostile",
            template_name=template_name, limit="nesting", value=None, maximum=None,
        )
    if "'break' outside loop" in detail or "'continue' not properly in loop" in detail:
        detail = "{% break %} or {% continue %} outside a {% for %} loop"
    return TemplateSyntaxError(
        f"template syntax error{where}: {detail}; fix the template", template_name=template_name, reason=detail,
    )


# What Python's parser and compiler say when code nests too deeply.
_TOO_DEEP = re.compile(r"too many (statically nested blocks|levels of indentation)|too many nested|nested too deeply|recursion")


def translate_runtime_error(exc: BaseException, template_name: str | None) -> Exception:
    """Turn an exception raised while rendering into a chatplate error naming the template line."""
    lineno = _template_line(exc.__traceback__)
    where = ""
    if template_name or lineno:
        parts = [template_name] if template_name else []
        if lineno:
            parts.append(f"line {lineno}")
        where = " (" + ", ".join(parts) + ")"
    context: dict[str, Any] = {"template_name": template_name, "lineno": lineno}
    if isinstance(exc, TemplateRaise):
        # The template's own message is the whole point: show it verbatim.
        return TemplateRaisedError(str(exc.message), **context)
    if isinstance(exc, LimitExceeded):
        how = (
            "this bound is fixed" if exc.limit not in LIMIT_NAMES else
            "if the template and its input are trusted, raise it: {fix}"
        )
        return TemplateResourceError(
            f"the template{where} {exc.describe()}; {how}",
            limit=exc.limit, value=exc.value, maximum=exc.maximum, **context,
            fix=raise_limit(exc.limit) if exc.limit in LIMIT_NAMES else None,
        )
    if isinstance(exc, RecursionError):
        return TemplateResourceError(
            f"the template{where} recursed deeper than Python allows ({exc}); lower limits.max_depth or fix the "
            "template's recursion", limit="max_depth", value=None, maximum=None, **context,
        )
    if isinstance(exc, MemoryError):
        return TemplateResourceError(
            f"the template{where} ran out of memory while rendering; lower limits.max_output_chars",
            limit="memory", value=None, maximum=None, **context,
        )
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return TemplateSecurityError(f"the template attempted an unsafe operation{where}: {exc}", **context)
    kind = type(exc).__name__
    return TemplateRuntimeError(f"template failed while rendering{where}: {kind}: {exc}", **context)


def _template_line(tb: types.TracebackType | None) -> int | None:
    # jinja2 rewrites tracebacks so template frames carry the template's own line numbers.
    lineno = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            lineno = tb.tb_lineno
        tb = tb.tb_next
    return lineno
