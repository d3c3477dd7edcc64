"""The only package that imports jinja2: environment, compilation and error translation."""

from .compiler import compile_template, has_generation_blocks, literal_text, read_variables, translate_runtime_error
from .budget import Budget
from .environment import record, render, render_with_spans
from .recording import Recording

__all__ = [
    "Budget", "Recording", "compile_template", "has_generation_blocks", "literal_text", "read_variables", "record",
    "render", "render_with_spans",
    "translate_runtime_error",
]
