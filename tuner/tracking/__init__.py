"""Experiment tracking: a parent run per study, a child run per trial (MLflow today)."""

from tuner.tracking.base import NullTracker, Tracker, TrialRun

__all__ = ["NullTracker", "TrialRun", "Tracker"]
