"""Training data: assistant masks and labels for any template."""

from .masks import MaskOptions, labels_from, token_mask

__all__ = ["MaskOptions", "labels_from", "token_mask"]
