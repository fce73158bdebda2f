"""Backends run a parsed search space through the shared trial objective (tuner/objective.py)."""
