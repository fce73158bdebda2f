"""The study in Optuna's storage, shared by both backends (storage, records), and the Optuna backend's
worker processes (worker, backend). The Ray backend asks and tells through the same storage."""
