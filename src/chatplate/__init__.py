"""chatplate: chat templates rendered exactly as transformers renders them, without transformers.

>>> import chatplate
>>> t = chatplate.load("chatml")
>>> print(t.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True))
<|im_start|>user
Hi<|im_end|>
<|im_start|>assistant
<BLANKLINE>
"""

from . import errors
from .chat import Chat, Sampling
from .errors import *  # noqa: F403 - the exception and warning trees, listed once in errors.__all__
from .limits import Limits
from .messages import messages_from_pairs
from .sources import load
from .template import ChatTemplate, RenderResult
from .tokens import BatchEncoding, ChatTokenizer, Encoding
from .tools import get_json_schema
from .training import PrepareSummary, prepare, prepare_dataset
from .trajectories import PrefixStability, Trajectory

__version__ = "0.1.0"

__all__ = [
    "ChatTemplate",
    "RenderResult",
    "Chat",
    "Sampling",
    "Trajectory",
    "PrefixStability",
    "Limits",
    "Encoding",
    "BatchEncoding",
    "ChatTokenizer",
    "load",
    "messages_from_pairs",
    "get_json_schema",
    "prepare",
    "prepare_dataset",
    "PrepareSummary",
    "__version__",
]
__all__ += errors.__all__  # the form type checkers read
