"""Tool schemas from Python functions match transformers' ``get_json_schema``, key order included,
and every function transformers refuses is refused with a ToolSchemaError saying what and where."""

# No `from __future__ import annotations` here on purpose: most tools below carry real type
# objects as hints; `forward_refs` covers string annotations explicitly.

import dataclasses
import functools
import json
import subprocess
import sys
import types
from collections.abc import Callable
from datetime import datetime
from enum import Enum, IntEnum
from typing import Annotated, Any, Dict, List, Literal, Optional, Tuple, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatplate
from chatplate.errors import InputError, ToolSchemaError
from chatplate.tools import get_json_schema, to_tool_schemas

transformers_utils = pytest.importorskip("transformers.utils")
chat_template_utils = pytest.importorskip("transformers.utils.chat_template_utils")
reference_schema = transformers_utils.get_json_schema


def dumps(value: Any) -> str:
    # No sort_keys: templates print tools with tojson, so key order is part of the output.
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Tools that convert
# ---------------------------------------------------------------------------------------------


class Color(Enum):
    RED = "red"
    GREEN = "green"


class Mixed(Enum):
    ONE = 1
    ALSO_ONE = True  # equal to 1, so an alias Enum iteration skips
    TWO = "two"
    HALF = 2.5
    NOTHING = None
    OFF = False


class Level(IntEnum):
    LOW = 1
    HIGH = 3


def multiply(x: float, y: float) -> float:
    """
    A function that multiplies two numbers

    Args:
        x: The first number to multiply
        y: The second number to multiply

    Returns:
        The product of x and y
    """
    return x * y


def search(query: str, limit: int = 10, lang: Optional[str] = None, *, strict: bool = False) -> list[str]:
    """Search the index.

    Args:
        query: What to look for.
        limit: Maximum number of hits.
        lang: ISO code, or nothing for any language.
        strict: Exact matches only.
    """
    return []


def unions(a: Union[int, str, bool], b: int | float | None, c: list | tuple, d: Union[int, Any]) -> None:
    """Unions of plain types become sorted type lists; anything else goes through anyOf.

    Args:
        a: int, str or bool.
        b: A number, or null.
        c: Both map to "array".
        d: Any is {} and so needs anyOf.
    """


def complex_unions(
    a: int | list[int], b: Optional[Union[str, dict[str, int]]], c: Optional[list[int]], d: Optional[Color]
) -> int | None:
    """Unions carrying items, additionalProperties or enum.

    Args:
        a: A number or a list of numbers.
        b: Text or a mapping.
        c: Numbers, or null.
        d: A colour, or null.

    Returns:
        Maybe a number.
    """
    return None


def literals(
    mode: Literal["fast", "slow"],
    mixed: Literal["a", 1, 2.5, True, None],
    maybe: Optional[Literal["x", "y"]] = None,
    nested: Literal["x", None] | None = None,
) -> Literal["ok", "error"]:
    """Literals become enums; mixed literals list their JSON types in order of appearance.

    Args:
        mode: Speed.
        mixed: Anything scalar.
        maybe: Optional literal.
        nested: A literal containing None, made optional as well.

    Returns:
        Status.
    """
    return "ok"


def enums(color: Color, mixed: Mixed, level: Level = Level.LOW, colors: list[Color] | None = None) -> Color:
    """Enum classes become enums of their member values.

    Args:
        color: A colour.
        mixed: Values of several JSON types.
        level: An IntEnum.
        colors: Several colours.
    """
    return color


def containers(
    matrix: list[list[float]],
    rows: list[dict[str, int]],
    point: tuple[int, str, float],
    pairs: list[tuple[str, Optional[int]]],
    anything: dict[str, Any],
    nested: dict[str, list[dict[str, bool]]],
) -> dict[str, list[int]]:
    """Nested generics.

    Args:
        matrix: Rows of numbers.
        rows: Records.
        point: A fixed-shape triple.
        pairs: Name/count pairs.
        anything: Free-form mapping.
        nested: Deeply nested.

    Returns:
        An index.
    """
    return {}


def bare_and_typing(
    a: list, b: tuple, c: dict, d: List[int], e: Dict[str, float], f: Tuple[int, int], g: Any, h: Tuple, i: tuple[()]
) -> Any:
    """Bare containers and typing aliases.

    Args:
        a: list
        b: tuple
        c: dict
        d: typing.List[int]
        e: typing.Dict[str, float]
        f: typing.Tuple[int, int]
        g: Any
        h: bare typing.Tuple
        i: the empty tuple

    Returns:
        Whatever.
    """


def odd_generics(a: dict[str], b: list[int, str], c: Annotated[int, "metadata is dropped"], d: None) -> None:
    """Corner cases of generic aliases.

    Args:
        a: A dict with only a key type.
        b: Only the first list argument counts.
        c: Annotated is unwrapped.
        d: Only null.
    """


def unconvertible_return(when: str) -> datetime:
    """The return hint cannot be converted, so "return" is left out.

    Args:
        when: A date.

    Returns:
        The parsed date.
    """
    return datetime.now()


def unconvertible_nested_return(n: int) -> list[set[int]]:
    """Nested unconvertible return.

    Args:
        n: How many.
    """
    return []


def no_arguments() -> None:
    """Does nothing at all."""


def described_only():
    """Has no parameters, no return hint and no sections.

    Just prose, over
    two paragraphs.
    """


def layout(a: str, b: int, c: bool = True) -> str:
    """Check the layout rules.

    A second paragraph that mentions nothing special.

    Args:
        a: First line of a,
            continued on a deeper line
            and another.

        b: After a blank line.
            Note: deeper indented "name:" lines stay in the description.
              Even deeper.
        c:
            Description starting on the next line.

    Returns:
        Something
        over two lines.

    Raises:
        ValueError: When things go wrong.
    """
    return a


def inline_markers(a: int, b: int) -> int:
    """See the Args: section below; this text ends the description early.

    Args:
        a: Sent back as-is.
        b: Number two. Returns: mid-line, this still ends the Args: block
        c: Not an argument, and never parsed anyway.
    Returns:
        The real returns section.
    """
    return a


def choices(
    unit: str,
    digits: int,
    level: Literal["low", "high"],
    loud: str = "a",
    spelled: str = "x",
) -> None:
    """Trailing (choices: ...) become enums.

    Args:
        unit: The unit. (choices: ["celsius" , " fahrenheit "])
        digits: How many digits (choices: [1, 2, 3])
        level: Replaces the Literal's enum in place (choices: ["low", "medium", "high"])
        loud: Case does not matter (CHOICES: ["a", "b"])
        spelled: A JSON string is iterated (choices: "xyz")
    """


def edge_spacing(text: str, flag: bool = False) -> str:
    """Spacing inside a line is kept.

    Args:
        text: Two  spaces and\ta tab survive,
            the line break does not.
        flag:
    Returns:
    Raises:
        Nothing; the Returns: description above is the empty string.
    """
    return text


def with_raises_only(path: str) -> bool:
    """Check a path.

    Args:
        path: Where to look.

    Raises:
        OSError: If the disk is gone.
        Returns: is not a section here.
    """
    return True


def returns_without_args() -> str:
    """A constant.

    Returns:
        Always the same string.
    Raises:
        Nothing.
    """
    return "x"


def varargs(*values: int, **options: str) -> None:
    """Variadic arguments are required properties under their bare names.

    Args:
        values: Numbers.
        options: Named strings.
    """


def annotated_self(self: int, cls: str) -> None:
    """An annotated self is an ordinary argument.

    Args:
        self: A number that happens to be called self.
        cls: A string that happens to be called cls.
    """


def forward_refs(a: "list[int]", b: "Optional[Color]") -> "dict[str, int]":
    """String annotations are evaluated.

    Args:
        a: Numbers.
        b: A colour.
    """
    return {}


def _decorate(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


@_decorate
def decorated(city: str, days: int = 3) -> str:
    """Forecast, behind a functools.wraps decorator.

    Args:
        city: Where.
        days: How far ahead.
    """
    return city


class Toolbox:
    """A class whose methods are tools."""

    def lookup(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """Look up a key.

        Args:
            key: The key.
            default: Returned when the key is missing.

        Returns:
            The value, or the default.
        """
        return default

    @classmethod
    def create(cls, size: int) -> "Toolbox":
        """Make a toolbox.

        Args:
            size: How big.
        """
        return cls()

    @staticmethod
    def ping(host: str) -> bool:
        """Ping a host.

        Args:
            host: Host name.
        """
        return True


class Child(Toolbox):
    def lookup(self, key: str, default: Optional[str] = None) -> Optional[str]:
        # No docstring: inspect.getdoc inherits the parent's.
        return None


lambda_tool = lambda n: n  # noqa: E731 - a lambda is a function too
lambda_tool.__doc__ = "Echo.\n\nArgs:\n    n: Anything."
lambda_tool.__annotations__ = {"n": int}


@dataclasses.dataclass
class Point:
    """A point, described like a function.

    Args:
        x: Horizontal.
        y: Vertical.
    """

    x: int
    y: float = 0.0


CONVERTIBLE = [
    multiply,
    search,
    unions,
    complex_unions,
    literals,
    enums,
    containers,
    bare_and_typing,
    odd_generics,
    unconvertible_return,
    unconvertible_nested_return,
    no_arguments,
    described_only,
    layout,
    inline_markers,
    choices,
    edge_spacing,
    with_raises_only,
    returns_without_args,
    varargs,
    annotated_self,
    forward_refs,
    decorated,
    Toolbox().lookup,
    Toolbox.lookup,
    Toolbox.create,
    Toolbox().create,
    Toolbox.__dict__["create"].__func__,  # unbound: cls is still in the signature
    Toolbox.ping,
    Child().lookup,
    lambda_tool,
    Point,
]


def _id(tool: Any) -> str:
    return getattr(tool, "__qualname__", repr(tool))


@pytest.mark.parametrize("tool", CONVERTIBLE, ids=[_id(tool) for tool in CONVERTIBLE])
def test_schema_matches_transformers(tool: Any) -> None:
    expected = reference_schema(tool)
    assert dumps(get_json_schema(tool)) == dumps(expected)


def test_enough_varied_tools() -> None:
    assert len(CONVERTIBLE) >= 20


# A few schemas written out by hand, so a shared misreading of the reference would still show.


def test_multiply_by_hand() -> None:
    assert get_json_schema(multiply) == {
        "type": "function",
        "function": {
            "name": "multiply",
            "description": "A function that multiplies two numbers",
            "parameters": {
                "type": "object",
                "properties": {
                    "x": {"type": "number", "description": "The first number to multiply"},
                    "y": {"type": "number", "description": "The second number to multiply"},
                },
                "required": ["x", "y"],
            },
            "return": {"type": "number", "description": "The product of x and y"},
        },
    }


def test_key_order_by_hand() -> None:
    props = get_json_schema(literals)["function"]["parameters"]["properties"]
    assert list(props["maybe"]) == ["type", "enum", "nullable", "description"]
    assert props["mixed"]["type"] == ["string", "integer", "number", "boolean", "null"]
    assert list(get_json_schema(choices)["function"]["parameters"]["properties"]["unit"]) == [
        "type",
        "enum",
        "description",
    ]


def test_unions_by_hand() -> None:
    props = get_json_schema(unions)["function"]["parameters"]["properties"]
    assert props["a"]["type"] == ["boolean", "integer", "string"]
    assert props["b"] == {"type": ["integer", "number"], "nullable": True, "description": "A number, or null."}
    assert props["c"]["type"] == "array"
    assert props["d"]["anyOf"] == [{"type": "integer"}, {}]


def test_layout_by_hand() -> None:
    function = get_json_schema(layout)["function"]
    props = function["parameters"]["properties"]
    assert props["a"]["description"] == "First line of a, continued on a deeper line and another."
    assert props["b"]["description"] == (
        'After a blank line. Note: deeper indented "name:" lines stay in the description. Even deeper.'
    )
    assert props["c"]["description"] == "Description starting on the next line."
    assert function["parameters"]["required"] == ["a", "b"]
    # Unlike arguments, the Returns: text keeps its line breaks and indentation.
    assert function["return"]["description"] == "Something\n    over two lines."


def test_inline_markers_by_hand() -> None:
    function = get_json_schema(inline_markers)["function"]
    assert function["description"] == "See the"
    assert function["parameters"]["properties"]["b"]["description"] == "Number two."
    assert function["return"]["description"] == "The real returns section."


def test_edge_spacing_by_hand() -> None:
    function = get_json_schema(edge_spacing)["function"]
    props = function["parameters"]["properties"]
    # inspect.getdoc expands tabs to spaces (8-column stops) before anything is parsed.
    assert props["text"]["description"].startswith("Two  spaces and ")
    assert props["text"]["description"].endswith(" a tab survive, the line break does not.")
    assert "\t" not in props["text"]["description"]
    assert props["flag"]["description"] == ""
    assert function["return"] == {"type": "string", "description": ""}


def test_choices_by_hand() -> None:
    props = get_json_schema(choices)["function"]["parameters"]["properties"]
    assert props["unit"] == {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "The unit."}
    assert props["digits"]["enum"] == [1, 2, 3]
    assert props["level"]["enum"] == ["low", "medium", "high"]
    assert props["loud"]["enum"] == ["a", "b"]
    assert props["spelled"]["enum"] == ["x", "y", "z"]


def test_methods_skip_receiver() -> None:
    for tool in (Toolbox().lookup, Toolbox.lookup, Toolbox.create, Toolbox.__dict__["create"].__func__):
        parameters = get_json_schema(tool)["function"]["parameters"]
        assert "self" not in parameters["properties"] and "cls" not in parameters["properties"]
    annotated = get_json_schema(annotated_self)["function"]["parameters"]
    assert annotated["required"] == ["self", "cls"]


def test_unconvertible_return_is_dropped() -> None:
    function = get_json_schema(unconvertible_return)["function"]
    assert "return" not in function
    assert get_json_schema(no_arguments)["function"]["return"] == {"type": "null"}
    assert "return" not in get_json_schema(described_only)["function"]


def test_image_and_audio_only_when_already_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    image_module = types.ModuleType("PIL.Image")
    tensor_module = types.ModuleType("torch")

    class Image:
        pass

    class Tensor:
        pass

    image_module.Image = Image  # type: ignore[attr-defined]
    tensor_module.Tensor = Tensor  # type: ignore[attr-defined]

    def show(picture: Image, clip: Tensor) -> None:
        """Show media.

        Args:
            picture: A picture.
            clip: A sound.
        """

    monkeypatch.delitem(sys.modules, "PIL.Image", raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    with pytest.raises(ToolSchemaError) as info:
        get_json_schema(show)
    assert info.value.argument == "picture"

    monkeypatch.setitem(sys.modules, "PIL.Image", image_module)
    monkeypatch.setitem(sys.modules, "torch", tensor_module)
    props = get_json_schema(show)["function"]["parameters"]["properties"]
    assert props["picture"]["type"] == "image"
    assert props["clip"]["type"] == "audio"


def test_tools_module_imports_nothing_heavy() -> None:
    code = "import json, sys, chatplate.tools; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = set(json.loads(result.stdout))
    assert not loaded & {"numpy", "torch", "PIL", "PIL.Image", "transformers"}


# ---------------------------------------------------------------------------------------------
# Docstrings, fuzzed: whatever transformers makes of a docstring, chatplate makes of it too
# ---------------------------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        "Args:", "Args:\n", "Returns:", "Returns:\n", "Raises:", "\n", "\n\n", " ", "  ", "    ", "\t", "x", "y",
        "x:", "y:", "z:", "value", ":", "(", ")", '(choices: ["a", " b"])', "(Choices: [1, 2])", "(choices: oops)",
        "\r", "\u00a0", "é", "*", "x (int):", "Note:", "-",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_FRAGMENTS, max_size=30).map("".join))
def test_docstring_fuzz_matches_transformers(doc: str) -> None:
    def tool(x: int, y: Literal["a", "b"] = "a") -> str:
        return ""

    tool.__doc__ = doc
    try:
        expected = dumps(reference_schema(tool))
    except Exception:  # noqa: BLE001 - any refusal by the reference must be a refusal here
        with pytest.raises(ToolSchemaError) as info:
            get_json_schema(tool)
        assert info.value.function == "tool"
        return
    assert dumps(get_json_schema(tool)) == expected


# ---------------------------------------------------------------------------------------------
# Tools that are refused
# ---------------------------------------------------------------------------------------------


def no_doc(x: int) -> int:
    return x


def blank_doc(x: int) -> int:
    """ """
    return x


def missing_hint(x: int, y) -> int:  # type: ignore[no-untyped-def]
    """Add.

    Args:
        x: A number.
        y: Another one.
    """
    return x


def missing_hint_varargs(x: int, *rest) -> int:  # type: ignore[no-untyped-def]
    """Add.

    Args:
        x: A number.
        rest: More.
    """
    return x


def missing_description(city: str, days: int) -> str:
    """Forecast.

    Args:
        city: Where.
    """
    return city


def typed_docstring_style(city: str) -> str:
    """Forecast.

    Args:
        city (str): Where.
    """
    return city


def args_on_first_line(city: str) -> str:
    """Args:
    city: Where.
    """
    return city


def args_with_trailing_space(city: str) -> str:
    return city


args_with_trailing_space.__doc__ = "Forecast.\n\nArgs:  \n    city: Where.\n"


def swallowed(a: str, b: str) -> str:
    """An empty description takes the next line.

    Args:
        a:
        b: Gone into a.
    """
    return a


def bad_datetime(when: datetime) -> None:
    """Schedule.

    Args:
        when: The time.
    """


def bad_set(tags: set[str]) -> None:
    """Tag.

    Args:
        tags: Tags.
    """


class Custom:
    pass


def bad_custom(item: Custom) -> None:
    """Store.

    Args:
        item: The thing.
    """


def bad_nested(items: dict[str, list[bytes]]) -> None:
    """Store.

    Args:
        items: Blobs.
    """


def bad_callable(callback: Callable[[int], int]) -> None:
    """Call back.

    Args:
        callback: The function.
    """


def bad_single_tuple(pair: tuple[int]) -> None:
    """One element.

    Args:
        pair: The tuple.
    """


def bad_ellipsis_tuple(values: Tuple[int, ...]) -> None:
    """Variable length.

    Args:
        values: The numbers.
    """


def bad_literal(flag: Literal[b"raw"]) -> None:
    """Bytes literal.

    Args:
        flag: Raw bytes.
    """


class Empty(Enum):
    pass


class Points(Enum):
    ORIGIN = (0, 0)


def bad_empty_enum(value: Empty) -> None:
    """No members.

    Args:
        value: Nothing.
    """


def bad_enum_values(value: Points) -> None:
    """Tuple values.

    Args:
        value: A point.
    """


def bad_choices_json(unit: str) -> None:
    """Units.

    Args:
        unit: The unit (choices: [celsius, fahrenheit])
    """


def bad_choices_scalar(level: int) -> None:
    """Levels.

    Args:
        level: How loud (choices: 5)
    """


def bad_forward_ref(item: "NoSuchType") -> None:  # type: ignore[name-defined]  # noqa: F821
    """Unresolvable.

    Args:
        item: The thing.
    """


def bad_unhashable(values: [int]) -> None:  # type: ignore[valid-type]
    """A list instead of a type.

    Args:
        values: Numbers.
    """


def bad_unhashable_return(x: int) -> [int]:  # type: ignore[valid-type]
    """A list instead of a return type; unlike other bad return hints, this one is fatal.

    Args:
        x: A number.
    """
    return [x]


def bad_second_argument(ok: int, bad: frozenset) -> None:
    """The first failing argument is the one reported.

    Args:
        ok: Fine.
        bad: Not fine.
    """


# (tool, function name, argument at fault, words the message must contain)
REFUSED = [
    (no_doc, "no_doc", None, ["no docstring", "Args:"]),
    (blank_doc, "blank_doc", None, ["no docstring"]),
    (missing_hint, "missing_hint", "y", ["'y'", "no type hint", "add one"]),
    (missing_hint_varargs, "missing_hint_varargs", "rest", ["'rest'", "no type hint"]),
    (missing_description, "missing_description", "days", ["'days'", "no description", "under Args:"]),
    (typed_docstring_style, "typed_docstring_style", "city", ["city (type)", "city: description"]),
    (args_on_first_line, "args_on_first_line", "city", ["no description", "Args:"]),
    (args_with_trailing_space, "args_with_trailing_space", "city", ["no description"]),
    (swallowed, "swallowed", "b", ["'b'", "no description"]),
    (bad_datetime, "bad_datetime", "when", ["'when'", "datetime", "JSON schema dict"]),
    (bad_set, "bad_set", "tags", ["'tags'", "set[str]"]),
    (bad_custom, "bad_custom", "item", ["'item'", "Custom", "JSON schema dict"]),
    (bad_nested, "bad_nested", "items", ["'items'", "bytes"]),
    (bad_callable, "bad_callable", "callback", ["'callback'", "Callable"]),
    (bad_single_tuple, "bad_single_tuple", "pair", ["one element", "list["]),
    (bad_ellipsis_tuple, "bad_ellipsis_tuple", "values", ["'...'", "list["]),
    (bad_literal, "bad_literal", "flag", ["Literal", "b'raw'"]),
    (bad_empty_enum, "bad_empty_enum", "value", ["Empty", "no members"]),
    (bad_enum_values, "bad_enum_values", "value", ["Points", "(0, 0)"]),
    (bad_choices_json, "bad_choices_json", "unit", ["not valid JSON", "JSON array"]),
    (bad_choices_scalar, "bad_choices_scalar", "level", ["not a list", "JSON array"]),
    (bad_forward_ref, "bad_forward_ref", None, ["NoSuchType", "cannot be evaluated"]),
    (bad_unhashable, "bad_unhashable", "values", ["'values'", "[<class 'int'>]"]),
    (bad_unhashable_return, "bad_unhashable_return", None, ["return type", "[<class 'int'>]"]),
    (bad_second_argument, "bad_second_argument", "bad", ["'bad'", "frozenset"]),
]


@pytest.mark.parametrize(("tool", "function", "argument", "words"), REFUSED, ids=[row[1] for row in REFUSED])
def test_refused_like_transformers(tool: Any, function: str, argument: str | None, words: list[str]) -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 - transformers raises several unrelated types
        reference_schema(tool)
    with pytest.raises(ToolSchemaError) as info:
        get_json_schema(tool)
    error = info.value
    assert error.function == function
    assert error.argument == argument
    message = str(error)
    assert function in message
    for word in words:
        assert word in message, (word, message)
    # A ValueError, like the errors of every other bad input.
    assert isinstance(error, InputError) and isinstance(error, ValueError)


def test_refused_tools_raise_the_first_error_transformers_reports() -> None:
    # Argument order decides which problem is reported: the same one transformers names.
    with pytest.raises(Exception, match="frozenset"):  # noqa: PT011
        reference_schema(bad_second_argument)
    with pytest.raises(ToolSchemaError) as info:
        get_json_schema(bad_second_argument)
    assert info.value.argument == "bad"


def test_lambda_without_docstring_names_lambda() -> None:
    with pytest.raises(ToolSchemaError) as info:
        get_json_schema(lambda x: x)
    assert info.value.function == "<lambda>"


def test_schema_error_is_exported() -> None:
    assert chatplate.ToolSchemaError is ToolSchemaError
    assert chatplate.get_json_schema is get_json_schema


# ---------------------------------------------------------------------------------------------
# to_tool_schemas
# ---------------------------------------------------------------------------------------------

SCHEMA = {"type": "function", "function": {"name": "noop", "description": "Nothing.", "parameters": {}}}


class SchemaDict(dict):  # type: ignore[type-arg]
    pass


class CallableObject:
    """Callable, but not a function.

    Args:
        x: A number.
    """

    def __call__(self, x: int) -> int:
        return x


def reference_tools(tools: Any) -> Any:
    """The ``tools`` variable transformers' renderer hands to the template, read back as JSON."""
    rendered, _ = chat_template_utils.render_jinja_template(
        conversations=[[{"role": "user", "content": "hi"}]], tools=tools, chat_template="{{ tools | tojson }}"
    )
    return json.loads(rendered[0])


def test_none_stays_none() -> None:
    assert to_tool_schemas(None) is None
    assert reference_tools(None) is None


def test_empty_list() -> None:
    assert to_tool_schemas([]) == [] == reference_tools([])


def test_dicts_are_passed_through_unchanged() -> None:
    subclass = SchemaDict(SCHEMA)
    out = to_tool_schemas([SCHEMA, subclass])
    assert out is not None
    assert out[0] is SCHEMA and out[1] is subclass


def test_mixed_tools_match_transformers() -> None:
    box = Toolbox()
    tools = [SCHEMA, multiply, box.lookup, Toolbox.create, enums]
    out = to_tool_schemas(tools)
    assert out is not None and len(out) == 5
    assert out[0] is SCHEMA
    assert [schema["function"]["name"] for schema in out] == ["noop", "multiply", "lookup", "create", "enums"]
    assert dumps(out) == dumps(reference_tools(tools))


def test_tuple_of_tools() -> None:
    out = to_tool_schemas((multiply,))
    assert out == [reference_schema(multiply)]


@pytest.mark.parametrize(
    ("bad", "type_name", "advice"),
    [
        (42, "int", None),
        ("multiply", "str", None),
        (None, "NoneType", None),
        (types.MappingProxyType(SCHEMA), "mappingproxy", "dict(...)"),
        (functools.partial(multiply, 2.0), "partial", "wrap it in a def"),
        (CallableObject(), "CallableObject", "wrap it in a def"),
        (len, "builtin_function_or_method", "wrap it in a def"),
        (Point, "type", "wrap it in a def"),
    ],
)
def test_non_tools_are_refused_like_transformers(bad: Any, type_name: str, advice: str | None) -> None:
    tools = [SCHEMA, multiply, bad]
    with pytest.raises(ValueError):  # noqa: PT011 - the reference's message is generic
        reference_tools(tools)
    with pytest.raises(ToolSchemaError) as info:
        to_tool_schemas(tools)
    error = info.value
    assert str(error).startswith(f"tools[2]: expected a JSON schema dict or a Python function, got {type_name}")
    if advice is None:
        assert str(error) == f"tools[2]: expected a JSON schema dict or a Python function, got {type_name}"
    else:
        assert advice in str(error)
    assert error.function is None and error.argument is None


def test_single_schema_instead_of_list() -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        reference_tools(SCHEMA)
    with pytest.raises(ToolSchemaError, match=r"tools\[0\].*got str.*wrap a single schema as \[schema\]"):
        to_tool_schemas(SCHEMA)  # type: ignore[arg-type]


def test_function_errors_propagate_with_their_context() -> None:
    with pytest.raises(ToolSchemaError) as info:
        to_tool_schemas([SCHEMA, missing_description])
    assert info.value.function == "missing_description"
    assert info.value.argument == "days"


def test_errors_pickle_with_context() -> None:
    import pickle

    with pytest.raises(ToolSchemaError) as info:
        get_json_schema(missing_hint)
    clone = pickle.loads(pickle.dumps(info.value))
    assert (clone.function, clone.argument, str(clone)) == ("missing_hint", "y", str(info.value))

