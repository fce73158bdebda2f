"""Paired evaluation timing of two tools that live in different processes (and venvs).

A full-sort evaluation of ml-100k takes 40-80 ms, and this machine's speed drifts by 20-30 % over
minutes, so two medians taken minutes apart (one process after the other) compare the drift as much
as the tools. Here each runner, once trained, stays up and serves timed evaluations on request; the
controller (bench/speed.py) alternates short blocks between the two, so every block of one tool has a
neighbour of the other a fraction of a second away, and the ratio is taken block by block.

Stdlib only: the RecBole runner imports this from its own venv. The protocol is one line each way on
the runner's stdin/stdout; other output on stdout (logs) is skipped by the client.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO

TAG = "@eval-server "


def serve(evaluate: Callable[[], object], requests: IO[str] = sys.stdin, replies: IO[str] = sys.stdout) -> list[float]:
    """Announce readiness, answer ``eval N`` with N timed evaluations, stop at ``quit``: all times, in order."""
    times: list[float] = []
    print(f"{TAG}ready", file=replies, flush=True)
    for line in requests:
        command = line.split()
        if command[:1] == ["quit"]:
            break
        if len(command) != 2 or command[0] != "eval":
            raise ValueError(f"eval server: expected 'eval N' or 'quit', got {line.strip()!r}")
        block = []
        for _ in range(int(command[1])):
            tic = time.perf_counter()
            evaluate()
            block.append(time.perf_counter() - tic)
        times.extend(block)
        print(f"{TAG}times {json.dumps(block)}", file=replies, flush=True)
    return times


class EvalClient:
    """Starts a runner with its eval server on and drives it: ``times(n)``, then ``close()``."""

    def __init__(self, command: Sequence[str], cwd: str, env: dict[str, str]) -> None:
        self.command = list(command)
        self.process = subprocess.Popen(self.command, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, bufsize=1)
        self._expect("ready")

    def _expect(self, what: str) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(TAG + what):
                return line[len(TAG + what):].strip()
        code = self.process.wait()
        raise RuntimeError(f"{self.command[1]} exited with status {code} before '{what}'")

    def times(self, n: int) -> list[float]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"eval {n}\n")
        self.process.stdin.flush()
        return json.loads(self._expect("times"))

    def close(self) -> None:
        remaining, _ = self.process.communicate("quit\n")
        if remaining:
            sys.stdout.write(remaining)
        if self.process.returncode:
            raise subprocess.CalledProcessError(self.process.returncode, self.command)


def paired_blocks(first: EvalClient, second: EvalClient, blocks: int, per_block: int) -> tuple[list, list]:
    """Alternate blocks of ``per_block`` evaluations, swapping which tool goes first each time."""
    a_blocks, b_blocks = [], []
    for index in range(blocks):
        if index % 2 == 0:
            a_blocks.append(first.times(per_block))
            b_blocks.append(second.times(per_block))
        else:
            b_blocks.append(second.times(per_block))
            a_blocks.append(first.times(per_block))
    return a_blocks, b_blocks
