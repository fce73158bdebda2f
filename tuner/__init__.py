"""seqtune's tuner: hyper.test search spaces, Optuna and Ray backends, tracking and reporting."""
