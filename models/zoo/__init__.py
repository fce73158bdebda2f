"""The model zoo: one module and one YAML of defaults per model (``GRU4Rec.yaml`` + ``gru4rec.py``)."""
