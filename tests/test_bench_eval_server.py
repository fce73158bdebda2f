"""bench/eval_server.py: the protocol that pairs two runners' evaluation timings."""

from __future__ import annotations

import io
import os
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from eval_server import EvalClient, paired_blocks, serve  # noqa: E402


def test_serve_answers_blocks_and_skips_nothing() -> None:
    calls: list[int] = []
    replies = io.StringIO()
    times = serve(lambda: calls.append(1), io.StringIO("eval 3\neval 2\nquit\neval 9\n"), replies)
    lines = replies.getvalue().splitlines()
    assert lines[0] == "@eval-server ready"
    assert [line.split(" ", 2)[1] for line in lines[1:]] == ["times", "times"]
    assert len(calls) == len(times) == 5  # nothing after quit


def test_serve_rejects_a_garbled_request() -> None:
    with pytest.raises(ValueError, match="expected 'eval N' or 'quit'"):
        serve(lambda: None, io.StringIO("evaluate\n"), io.StringIO())


def _runner(tmp_path: Path, name: str, seconds: float) -> list[str]:
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT / 'bench')!r})
        from eval_server import serve
        print("a log line the client must skip", flush=True)
        times = serve(lambda: time.sleep({seconds}))
        print("done", len(times))
    """))
    return [sys.executable, str(script)]


def test_client_pairs_two_processes_in_alternating_blocks(tmp_path: Path) -> None:
    env = dict(os.environ)
    slow = EvalClient(_runner(tmp_path, "slow", 0.05), cwd=str(tmp_path), env=env)
    fast = EvalClient(_runner(tmp_path, "fast", 0.002), cwd=str(tmp_path), env=env)
    slow_blocks, fast_blocks = paired_blocks(slow, fast, blocks=4, per_block=2)
    slow.close()
    fast.close()
    assert [len(b) for b in slow_blocks] == [len(b) for b in fast_blocks] == [2, 2, 2, 2]
    assert min(t for b in slow_blocks for t in b) >= 0.05
    assert max(t for b in fast_blocks for t in b) < min(t for b in slow_blocks for t in b)


def test_client_reports_a_runner_that_dies_before_ready(tmp_path: Path) -> None:
    script = tmp_path / "dies.py"
    script.write_text("raise SystemExit(3)\n")
    with pytest.raises(RuntimeError, match="exited with status 3 before 'ready'"):
        EvalClient([sys.executable, str(script)], cwd=str(tmp_path), env=dict(os.environ))
