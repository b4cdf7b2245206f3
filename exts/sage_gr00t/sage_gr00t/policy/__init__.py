"""Policies: the GR00T-style `get_action(observation) -> action chunk` interface and its implementations."""

from sage_gr00t.policy.base import ExpertPolicy, Policy

__all__ = ["ExpertPolicy", "Policy"]
