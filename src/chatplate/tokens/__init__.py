"""Token ids: the tokenizer adapter, control-token safety and the encoder.

Imports ``tokenizers`` only when a tokenizer is actually loaded.
"""

from .encoding import BatchEncoding, Encoding
from .tokenizer import ChatTokenizer

__all__ = ["BatchEncoding", "ChatTokenizer", "Encoding"]
