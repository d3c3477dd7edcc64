"""Token-in, token-out trajectories for multi-turn (agentic) RL.

:class:`Trajectory` keeps the ids a model sampled verbatim and encodes only what the template
writes between turns; :func:`prefix_stability` tells, before any rollout, whether a template
keeps earlier renders as a prefix when turns are appended.
"""

from .stability import PrefixStability, Witness, prefix_stability
from .trajectory import Extension, Trajectory

__all__ = ["Trajectory", "Extension", "PrefixStability", "Witness", "prefix_stability"]
