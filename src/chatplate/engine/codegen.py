"""jinja2's code generator, with the operations that can build large values routed through
``guards.py``.

The Python jinja2 writes for a template is kept as it is, except for these places: ``+``, ``*``,
``**`` and ``%`` call the guarded operators, ``~`` calls the guarded join, each ``for`` loop
iterates through ``iterate`` (one unit of work per item; a loop in a macro or block is given
that body's output buffer, so the budget can watch it fill, and a loop whose body reads
``loop.last`` or the like is told so, for ``recording.py``), a list, tuple or dict literal that
holds other values is measured once built (``container``), each read of
``add_generation_prompt`` goes through ``flag`` (also for ``recording.py``), and a value printed
with ``{{ ... }}`` that is not already a string or a number goes through ``text``. Strings, the
overwhelming majority of what templates print, take the same path as before: a type check
instead of ``str()``. Two fast paths come with it: dict keys and ``+`` are read inline.
"""

from __future__ import annotations

from typing import Any

import jinja2.nodes as nodes
from jinja2.compiler import CodeGenerator, Frame

from .guards import SMALL

__all__ = ["GuardedCodeGenerator", "GUARDED_BINOPS", "FREE_TAILS"]

_GUARDS = "chatplate.engine.guards"
_BINOPS = {"+": "add", "*": "mul", "**": "power", "%": "mod"}
# The generated module's set of loops whose following code reads only the template's variables.
FREE_TAILS = "cp_free_tails"
# Operators jinja2 must neither fold at compile time nor emit inline.
GUARDED_BINOPS = frozenset(_BINOPS)
# The temporary the output guard keeps the printed value in (a local of the generated function).
_VALUE = "cp_value"
# A macro body without a loop that writes at most this many values is joined before it is
# checked (its output is at most this many values long).
_FEW_VALUES = 4
# Names a dict answers as attributes (`d.items` is the method, not `d['items']`).
_DICT_ATTRIBUTES = frozenset(dir(dict))


class GuardedCodeGenerator(CodeGenerator):
    """Generates the same code as jinja2's, with guards at the operations that grow."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # id(loop iterable) -> whether the loop looks ahead, and the loop's place in the source
        self._iterables: dict[int, tuple[bool, int]] = {}
        self._loop_ids: dict[int, int] = {}
        self._loop_inside = self._recursive_loop = True
        self._values_written = 0
        self._join_first: set[str] = set()

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        names = ", ".join(f"{name} as cp_{name}" for name in ("buffer", "concat", "container", "iterate", "text", "checked", "sized", "flag", "FLAT", *_BINOPS.values()))
        self.writeline(f"from {_GUARDS} import {names}")
        # Every loop by its place in the source; for recording.py, the loops whose following code
        # reads nothing but the template's variables.
        loops = list(node.find_all(nodes.For))
        self._loop_ids = {id(loop): index for index, loop in enumerate(loops)}
        assigned = {name.name for name in node.find_all(nodes.Name) if name.ctx in ("store", "param")}
        assigned.update(macro.name for macro in node.find_all(nodes.Macro))
        free = sorted(index for index, loop in enumerate(loops) if _reads_only_variables_after(node, loop, assigned))
        self.writeline(f"{FREE_TAILS} = frozenset({free!r})")
        super().visit_Template(node, frame)

    # -- fast paths (no bounds involved) --------------------------------------------------------
    # ``message['content']`` and ``message.role`` on a plain dict that has the key: what the
    # sandbox's getitem/getattr would return, without the call. Anything else takes the call.

    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        if node.ctx != "load" or node.attr in _DICT_ATTRIBUTES:
            super().visit_Getattr(node, frame)
            return
        obj, name = self.temporary_identifier(), repr(node.attr)
        self.write(f"({obj}[{name}] if type({obj} := ")
        self.visit(node.node, frame)
        self.write(f") is dict and {name} in {obj} else environment.getattr({obj}, {name}))")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        # Only constant keys: hashable, and free to write three times.
        if node.ctx != "load" or not isinstance(node.arg, nodes.Const) or not isinstance(node.arg.value, (str, int)):
            super().visit_Getitem(node, frame)
            return
        obj, key = self.temporary_identifier(), repr(node.arg.value)
        self.write(f"({obj}[{key}] if type({obj} := ")
        self.visit(node.node, frame)
        self.write(f") is dict and {key} in {obj} else ")
        if isinstance(node.arg.value, str) and not hasattr(str, node.arg.value):
            # A string indexed by a name strings have no attribute for (`part['type']` while a
            # template iterates the characters of a string content): undefined, as the sandbox says.
            self.write(f"environment.undefined(obj={obj}, name={key}) if type({obj}) is str else ")
        self.write(f"environment.getitem({obj}, {key}))")

    # -- guards -------------------------------------------------------------------------------

    # Output buffers: a loop that runs long in a buffered body has the budget watch that body's
    # buffer (``cp_iterate`` is given it), so its growth is counted while it fills; a recursive
    # loop's own buffer is watched from the start.

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = {'cp_buffer()' if self._recursive_loop else '[]'}")
        if not self._loop_inside and self._values_written <= _FEW_VALUES:
            self._join_first.add(frame.buffer)

    def return_buffer_contents(self, frame: Frame, force_unescaped: bool = False) -> None:
        if frame.buffer not in self._join_first or frame.eval_ctx.volatile or frame.eval_ctx.autoescape:
            super().return_buffer_contents(frame, force_unescaped)  # the bounded join, "concat"
            return
        # A body with no loop that writes a few values: its output is at most a few values
        # long, so it is joined first and checked after (a call less on every macro call).
        self.writeline(f"return cp_sized(cp_joined) if len(cp_joined := ''.join({frame.buffer})) > {SMALL} else cp_joined")

    def _buffered(self, node: nodes.Node) -> None:
        self._recursive_loop = False
        self._loop_inside = node.find(nodes.For) is not None
        self._values_written = sum(
            not isinstance(child, nodes.TemplateData) for output in node.find_all(nodes.Output) for child in output.nodes
        )

    def macro_body(self, node: Any, frame: Frame) -> Any:
        self._buffered(node)
        return super().macro_body(node, frame)

    def visit_FilterBlock(self, node: nodes.FilterBlock, frame: Frame) -> None:
        self._buffered(node)
        super().visit_FilterBlock(node, frame)

    def visit_AssignBlock(self, node: nodes.AssignBlock, frame: Frame) -> None:
        self._buffered(node)
        super().visit_AssignBlock(node, frame)

    def _binop(self, node: nodes.BinExpr, frame: Frame) -> None:
        self.write(f"cp_{_BINOPS[node.operator]}(")
        self.visit(node.left, frame)
        self.write(", ")
        self.visit(node.right, frame)
        self.write(")")

    visit_Mul = visit_Pow = visit_Mod = _binop

    def visit_Add(self, node: nodes.BinExpr, frame: Frame) -> None:
        # The commonest operator in templates: a number, or a short string, needs no call.
        result, kind = self.temporary_identifier(), self.temporary_identifier()
        if any(isinstance(side, nodes.Const) and isinstance(side.value, str) for side in (node.left, node.right)):
            # With a string literal on one side the result is a string (or the + fails).
            self.write(f"({result} if len({result} := ")
            self._sum(node, frame)
            self.write(f") <= {SMALL} else cp_add({result}))")
            return
        self.write(f"({result} if ({kind} := ({result} := ")
        self._sum(node, frame)
        self.write(f").__class__) is int or ({kind} is str and len({result}) <= {SMALL}) else cp_add({result}))")

    def _sum(self, node: nodes.BinExpr, frame: Frame) -> None:
        self.visit(node.left, frame)
        self.write(" + ")
        self.visit(node.right, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            markup = "context.eval_ctx.volatile"
        else:
            markup = "True" if frame.eval_ctx.autoescape else "False"
        self.write("cp_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(f"), {markup})")

    def _literal(self, node: nodes.Expr, frame: Frame, write: Any) -> None:
        values = [item.value for item in node.items] if isinstance(node, nodes.Dict) else node.items
        if getattr(node, "ctx", "load") != "load" or all(isinstance(v, nodes.Const) for v in values):
            write(self, node, frame)
            return
        # A literal holding other values: the same value twice doubles what it prints as.
        self.write("cp_container(")
        write(self, node, frame)
        self.write(")")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._literal(node, frame, CodeGenerator.visit_List)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        self._literal(node, frame, CodeGenerator.visit_Tuple)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._literal(node, frame, CodeGenerator.visit_Dict)

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # jinja2 allows no new node types, so the iterable is marked and wrapped where visited.
        self._iterables[id(node.iter)] = (_looks_ahead(node), self._loop_ids.get(id(node), -1))
        self._loop_inside = self._recursive_loop = node.recursive  # for the buffer a recursive loop makes
        super().visit_For(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        loop = self._iterables.get(id(node))
        if loop is None:
            return super().visit(node, *args, **kwargs)
        frame = args[0]
        self.write("cp_iterate(")
        super().visit(node, *args, **kwargs)
        self.write(f", {frame.buffer or None}, {loop[0]}, {loop[1]})")
        return None

    def visit_Name(self, node: nodes.Name, frame: Frame) -> None:
        if node.ctx != "load" or node.name != "add_generation_prompt":
            super().visit_Name(node, frame)
            return
        # Where a template reads it tells a recorded render which output does not depend on it.
        self.write("cp_flag(")
        super().visit_Name(node, frame)
        self.write(")")

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape or finalize.src is not None:
            super()._output_child_pre(node, frame, finalize)
            self.write("cp_checked(")
        else:
            self.write(f"({_VALUE} if ({_VALUE} := ")

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape or finalize.src is not None:
            self.write(")")
            super()._output_child_post(node, frame, finalize)
        else:
            self.write(f").__class__ is str else str({_VALUE}) if {_VALUE}.__class__ in cp_FLAT else cp_text({_VALUE}))")


# What a loop knows at the top of an iteration; `loop.last`, `loop.length`, `loop.revindex` and
# `loop.nextitem` look at the items still to come.
_IN_STEP = frozenset(("index", "index0", "first", "previtem", "depth", "depth0", "cycle", "changed"))


def _looks_ahead(node: nodes.For) -> bool:
    """Whether the body of the loop ``node`` reads ``loop`` for anything but :data:`_IN_STEP`
    (``loop`` in a nested loop's body is that loop's own)."""
    allowed: set[int] = set()
    pending: list[nodes.Node] = [*node.body, *node.else_]
    while pending:
        child = pending.pop()
        if isinstance(child, nodes.For):
            pending.extend((child.iter, *child.else_))
            continue
        if isinstance(child, nodes.Getattr) and isinstance(child.node, nodes.Name) and child.attr in _IN_STEP:
            allowed.add(id(child.node))
        elif isinstance(child, nodes.Name) and child.name == "loop" and child.ctx == "load" and id(child) not in allowed:
            return True
        pending.extend(child.iter_child_nodes())
    return False


# Names whose value after a loop can differ between a conversation and a longer one, or between
# two renders: the messages, the loop, macro plumbing, the clock and random text.
_NOT_VARIABLES = frozenset(("messages", "loop", "caller", "varargs", "kwargs", "self", "strftime_now", "lipsum"))


def _reads_only_variables_after(root: nodes.Template, loop: nodes.For, assigned: set[str]) -> bool:
    """Whether the code that runs after ``loop`` (the statements after it, in its ``if``
    branches and at the top level) reads only names the template never assigns (``assigned``:
    its variables and globals), and the loop sits at the top level or in ``if`` branches only."""
    path = _statement_path(root.body, loop)
    if path is None:
        return False
    for body, index in path:
        for statement in body[index + 1 :]:
            names = statement.find_all(nodes.Name)
            if any(name.ctx == "load" and (name.name in assigned or name.name in _NOT_VARIABLES) for name in names):
                return False
    return True


def _statement_path(body: list[nodes.Node], target: nodes.Node) -> list[tuple[list[nodes.Node], int]] | None:
    """The statement lists from ``body`` down to ``target`` with its place in each, through
    ``if`` branches only (``None`` if it is reached through anything else, or not at all)."""
    for index, statement in enumerate(body):
        if statement is target:
            return [(body, index)]
        if isinstance(statement, nodes.If):
            for branch in (statement.body, *(elif_.body for elif_ in statement.elif_), statement.else_):
                below = _statement_path(branch, target)
                if below is not None:
                    return [(body, index), *below]
    return None
