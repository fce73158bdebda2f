"""seqtune's recommender library: RecBole-compatible data, trainer, metrics and models.

The tuner uses exactly this API:
    config = build_config("GRU4Rec", "ml-100k", config_files, overrides)
    result = train(config, callback=on_epoch)       # -> TrainResult
"""

from models.config import Config, build_config
from models.errors import ConfigError, DataError, SeqtuneError
from models.registry import available_models, create_model, register_model

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "SeqtuneError",
    "available_models",
    "build_config",
    "create_model",
    "register_model",
    "train",
]


def __getattr__(name: str):  # lazy: importing torch costs ~1.3 s, config checks need none of it
    if name in {"train", "TrainResult", "EpochReport"}:
        from models import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
