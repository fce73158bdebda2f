-- A second database for MLflow beside the Optuna studies in "seqtune".
CREATE DATABASE mlflow OWNER seqtune;
