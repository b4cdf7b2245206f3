"""Policies: the GR00T-style `get_action(observation) -> action chunk` protocol and its implementations.

`sage_gr00t.policy.gr00t` holds the native GR00T N1.5-architecture model; the scripted expert's
adapter lives in `sage_gr00t.experts.policy` (it needs the simulator).
"""

from sage_gr00t.policy.base import Policy

__all__ = ["Policy"]
