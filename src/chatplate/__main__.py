"""``python -m chatplate``: the command line."""

from .cli import run

run()
