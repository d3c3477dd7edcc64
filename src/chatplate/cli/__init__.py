"""The ``chatplate`` command line. typer and rich are imported only here (extra ``[cli]``)."""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from typing import Any, NoReturn

from ..errors import ChatplateError, ChatplateWarning, TemplateSyntaxError

__all__ = ["main", "run"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return its exit status (0 ok, 1 failure, 2 usage).

    Known errors become one line on stderr (``chatplate: error: ...``), chatplate's warnings one
    line each (``chatplate: warning: ...``); set ``CHATPLATE_DEBUG=1`` for the traceback.
    """
    try:
        from .app import build_app
    except ImportError as exc:
        print(
            f"chatplate: the command line needs the 'cli' extra ({exc.name} is missing): "
            "pip install 'chatplate[cli]'",
            file=sys.stderr,
        )
        return 1
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, ChatplateWarning):
                print(f"chatplate: warning: {_one_line(message)}", file=sys.stderr)
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        try:
            # Standalone mode: typer itself reports usage errors (exit 2) and --help (exit 0).
            build_app()(args=argv, prog_name="chatplate")
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except (ChatplateError, OSError) as exc:
            if os.environ.get("CHATPLATE_DEBUG"):
                traceback.print_exc()
            print(f"chatplate: error: {_one_line(exc)}", file=sys.stderr)
            return 1
    return 0


def run() -> NoReturn:
    """The ``chatplate`` program (``python -m chatplate`` too): :func:`main`, then exit.

    The interpreter is not torn down object by object: after ``prepare`` of 3,000 chats, freeing
    the tokenizers, numpy and pyarrow took 0.13-0.16 s of a 1.6 s run, for nothing. Exit
    handlers still run and output is flushed first. Code that calls :func:`main` keeps its
    interpreter.
    """
    import atexit

    status = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(status)


def _one_line(exc: BaseException | Warning | str) -> str:
    text = exc.for_cli() if isinstance(exc, ChatplateError) else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if isinstance(exc, TemplateSyntaxError):
        return lines[0]  # the excerpt and caret only make sense on their own lines
    return " ".join(lines)
