"""A fit stopped by its callback continues from its saved state with the numbers of a fit never stopped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from models.config import Config
from models.fit_state import state_path
from models.trainer import prepare, train
from tests.test_kg import _config as kg_config
from tests.test_kg import kg_dir  # noqa: F401 - a fixture
from tests.test_s3rec import _config as s3rec_config
from tests.test_trainer import _config as gru_config
from tuner.objective import Reporter, StudySpec, run_trial
from tuner.trial import TrialState

BPR = {"loss_type": "BPR", "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}
# each model on its small dataset (fixture), with dropout so that torch's RNG matters
CASES: dict[str, tuple[str, Callable[..., Config]]] = {
    "GRU4Rec": ("synthetic_dir", lambda root, **o: gru_config(root, dropout_prob=0.3, **o)),
    "GRU4Rec-BPR": ("synthetic_dir", lambda root, **o: gru_config(root, dropout_prob=0.3, **BPR, **o)),
    "KSR": ("kg_dir", lambda root, **o: kg_config(root, "KSR", **o)),
    "GRU4RecKG": ("kg_dir", lambda root, **o: kg_config(root, "GRU4RecKG", **o)),
    "S3Rec": ("toys", lambda root, **o: s3rec_config(root, **o)),
}


def _numbers(result) -> tuple:
    curve = [(h["epoch"], h["train_loss"], h["valid_result"], h["best_epoch"]) for h in result.history]
    return curve, result.best_valid_result, result.test_result, result.best_epoch, result.epochs_run


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_stopped_fit_continues_exactly(case: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    fixture, make = CASES[case]
    root = request.getfixturevalue(fixture)
    config = make(root, epochs=6, stopping_step=50)
    straight = train(config)
    resume = tmp_path / "resume"

    first = train(make(root, epochs=6, stopping_step=50), callback=lambda report: report.epoch == 2,
                  resume_dir=resume)
    assert first.stopped_by_callback and first.epochs_run == 3
    assert first.resume_state is not None and Path(first.resume_state).is_file()

    heard: list[tuple[int, bool]] = []
    second = train(make(root, epochs=6, stopping_step=50, threads=1),  # threads: how it runs, not what
                   callback=lambda report: heard.append((report.epoch, report.restored)), resume_dir=resume)
    assert second.resumed_epochs == 3 and second.resume_state is None
    assert heard == [(e, e < 3) for e in range(6)]
    assert _numbers(second) == _numbers(straight)
    assert not list(resume.iterdir())  # it ended on its own: nothing left to continue


def test_a_stop_at_the_early_stop_does_not_train_on(synthetic_dir: Path, tmp_path: Path) -> None:
    """Stopped by its callback at the very epoch its early stop ends it: the continued fit trains nothing."""
    straight = train(gru_config(synthetic_dir, epochs=30, stopping_step=0, learning_rate=0.05))
    assert straight.stopped_early and straight.epochs_run < 30
    last = straight.epochs_run - 1
    train(gru_config(synthetic_dir, epochs=30, stopping_step=0, learning_rate=0.05),
          callback=lambda report: report.epoch == last, resume_dir=tmp_path)
    again = train(gru_config(synthetic_dir, epochs=30, stopping_step=0, learning_rate=0.05), resume_dir=tmp_path)
    assert again.resumed_epochs == straight.epochs_run and again.stopped_early
    assert _numbers(again) == _numbers(straight)


def test_only_a_state_of_the_same_computation_is_read(synthetic_dir: Path, tmp_path: Path) -> None:
    resume = tmp_path / "resume"
    config = gru_config(synthetic_dir, epochs=4)
    train(config, callback=lambda report: report.epoch == 1, resume_dir=resume)
    [saved] = list(resume.iterdir())
    data, model = prepare(config)
    assert saved == state_path(resume, config, data, model)
    other = train(gru_config(synthetic_dir, epochs=4, learning_rate=0.01), resume_dir=resume)
    assert other.resumed_epochs == 0 and saved.is_file()  # another learning rate: its own fit
    longer = gru_config(synthetic_dir / "toy" / "..", epochs=9)
    assert state_path(resume, longer, data, model) == saved  # epochs and the folder's spelling: same fit

    saved.write_bytes(saved.read_bytes()[:100])  # torn: started over, never trusted
    again = train(config, resume_dir=resume)
    assert again.resumed_epochs == 0 and _numbers(again) == _numbers(train(gru_config(synthetic_dir, epochs=4)))


class _StopAt(Reporter):
    """Stops the trial after ``epoch``: a pause (the budget's stop) or a pruner's stop."""

    def __init__(self, epoch: int, pause: bool) -> None:
        self.epoch, self.pause = epoch, pause

    def report(self, epoch: int, valid_score: float, metrics: dict[str, float], train_loss: float) -> bool:
        return epoch == self.epoch

    def stopped_to_continue(self) -> bool:
        return self.pause


def test_a_trial_stopped_to_continue_keeps_its_state_and_its_copy_continues_it(synthetic_dir: Path,
                                                                               tmp_path: Path) -> None:
    """The tuner's side: a trial paused (by the budget) leaves its state; the copy queued for the resume,
    another trial number, continues it and records the same curve and metrics as a trial never stopped;
    a pruned trial leaves nothing."""
    overrides = {"data_path": str(synthetic_dir), "epochs": 5, "hidden_size": 16, "embedding_size": 8,
                 "train_batch_size": 64, "show_progress": False, "dropout_prob": 0.2}
    spec = StudySpec("GRU4Rec", "toy", overrides=overrides, resume_dir=str(tmp_path / "resume"))
    params = {"learning_rate": 0.01}
    straight = run_trial(StudySpec("GRU4Rec", "toy", overrides=overrides), params, 0)

    pruned = run_trial(spec, params, 1, _StopAt(1, pause=False))
    assert pruned.state == TrialState.PRUNED and not list((tmp_path / "resume").iterdir())
    paused = run_trial(spec, params, 2, _StopAt(1, pause=True))
    assert paused.epochs_run == 2 and len(list((tmp_path / "resume").iterdir())) == 1
    copy = run_trial(spec, params, 3)
    assert copy.state == TrialState.COMPLETE and copy.resumed_epochs == 2 and straight.resumed_epochs is None
    same = ("best_valid_result", "test_result", "epochs_run", "best_epoch")
    assert [getattr(copy, k) for k in same] == [getattr(straight, k) for k in same]
    assert [(c["epoch"], c["train_loss"], c["valid_result"]) for c in copy.curve] == \
        [(c["epoch"], c["train_loss"], c["valid_result"]) for c in straight.curve]
    assert not list((tmp_path / "resume").iterdir())
