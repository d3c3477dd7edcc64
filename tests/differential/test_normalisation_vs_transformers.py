"""Rich Python objects in messages, tools and variables reach templates exactly as in transformers."""

from __future__ import annotations

import dataclasses
import enum
from collections import OrderedDict
from typing import Any

import pytest

import chatplate
from tests.reference import reference_render

# The corpus and the generated cases pass every template the same extra keywords (as transformers'
# callers do); that most templates ignore some of them is expected here, and tested in
# test_unused_variables.
pytestmark = pytest.mark.filterwarnings("ignore::chatplate.UnusedVariableWarning")

np = pytest.importorskip("numpy")
pydantic = pytest.importorskip("pydantic")

# Templates that expose every value: JSON, Python repr, and iteration.
PROBES = [
    "{{ messages | tojson }}|{{ tools | tojson }}|{{ extra | tojson }}",
    "{{ messages }}|{{ tools }}|{{ extra }}",
    "{% for m in messages %}{% for k, v in m | dictsort %}{{ k }}={{ v }};{% endfor %}{% endfor %}",
    "{% for m in messages %}{{ m.content is string }}{{ m.content is mapping }}{{ m.content is iterable }}{% endfor %}",
]


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Tag(str):
    def shout(self) -> str:
        return self.upper()


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Model(pydantic.BaseModel):
    role: str
    content: str


class Opaque:
    pass


CASES: dict[str, Any] = {
    "str-subclass-and-intenum": [{"role": Tag("user"), "content": Tag("hi"), "level": Level.HIGH}],
    "plain-enum": [{"role": "user", "content": "x", "colour": Colour.RED}],
    "tuple-content": [{"role": "user", "content": ({"type": "text", "text": "a"}, {"type": "image"})}],
    "ordered-dict-message": [OrderedDict(role="user", content="ordered")],
    "dataclass-value": [{"role": "user", "content": "p", "point": Point(1, 2.5)}],
    "pydantic-value": [{"role": "user", "content": "m", "model": Model(role="user", content="inner")}],
    "numpy-scalars": [{"role": "user", "content": "n", "i": np.int64(3), "b": np.bool_(False), "f": np.float32(0.5)}],
    "numpy-array": [{"role": "user", "content": "a", "array": np.arange(3)}],
    "opaque-object": [{"role": "user", "content": "o", "thing": Opaque()}],
    "nested-none": [{"role": "user", "content": [{"type": "text", "text": None}], "meta": {"k": None}}],
    "non-string-keys": [{"role": "user", "content": "k", "table": {1: "one", (2, 3): "pair"}}],
}

EXTRAS: dict[str, Any] = {
    "none": None,
    "rich": {"level": Level.HIGH, "tag": Tag("t"), "point": Point(0, 0.0), "np": np.int32(7)},
}

TOOLS = [{"type": "function", "function": {"name": Tag("f"), "parameters": {"type": "object", "n": np.int8(1)}}}]


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception:  # noqa: BLE001 - only raise/no-raise is compared: our errors are typed
        return "raised", None


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_same_as_transformers(probe: str, case: str, extra: str) -> None:
    messages = CASES[case]
    ours = outcome(lambda: chatplate.ChatTemplate(probe).render(messages, tools=TOOLS, extra=EXTRAS[extra]))
    theirs = outcome(lambda: reference_render(probe, messages, tools=TOOLS, extra=EXTRAS[extra])[0])
    assert ours == theirs
