"""Experiment tracking: a parent run per study, a child run per trial (MLflow today)."""

from tuner.tracking.base import NullTracker, TrackedTrial, Tracker

__all__ = ["NullTracker", "TrackedTrial", "Tracker"]
