"""Training data: assistant masks and labels for any template, dataset formats, and ``prepare``."""

from .formats import FORMATS, Example, detect_format, to_example
from .masks import MaskOptions, labels_from, token_mask
from .pipeline import REASONS, PrepareSummary, prepare, prepare_dataset

__all__ = [
    "FORMATS",
    "REASONS",
    "Example",
    "MaskOptions",
    "PrepareSummary",
    "detect_format",
    "labels_from",
    "prepare",
    "prepare_dataset",
    "to_example",
    "token_mask",
]
