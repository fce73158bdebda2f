"""One S3Rec pretraining step (ml-100k, batch 2048) in one of three memory settings: where the time and
the peak go. Run each setting in a fresh process (the peak is the process's):

    python bench/s3rec_step_memory.py off               # keep every activation, the tuned heap
    python bench/s3rec_step_memory.py recompute_heap    # recompute the encoder, the tuned heap
    python bench/s3rec_step_memory.py low_memory        # recompute, buffers of 8 MB+ back to the OS

Prints seconds, user and system CPU per step (2 steps after a warm-up) and the peak RSS.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import models.trainer as trainer_module  # noqa: E402
from models.config import build_config  # noqa: E402
from models.pretrain import pretrain_config  # noqa: E402


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "low_memory"
    if mode not in ("off", "recompute_heap", "low_memory"):
        raise SystemExit(__doc__)
    if mode == "recompute_heap":  # low_memory's recomputation without its allocator setting
        trainer_module.LOW_MEMORY_MMAP_BYTES = 2**31 - 1
    config = build_config("S3Rec", "ml-100k", overrides={"threads": 2, "low_memory": mode != "off"})
    data, model = trainer_module.prepare(config)
    trainer = trainer_module.Trainer(pretrain_config(config), model, data)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    size = int(config["train_batch_size"])
    model.train()
    trainer.train_step(data.train.batch(order[:size]), None)
    tic, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    losses = [trainer.train_step(data.train.batch(order[i * size:(i + 1) * size]), None) for i in (1, 2)]
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{mode}: {(time.perf_counter() - tic) / 2:.2f} s/step, user {(after.ru_utime - before.ru_utime) / 2:.1f} s, "
          f"system {(after.ru_stime - before.ru_stime) / 2:.1f} s, peak RSS {after.ru_maxrss / 1024:.0f} MB, "
          f"losses {losses}")


if __name__ == "__main__":
    main()
