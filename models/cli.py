"""Command-line helpers shared by ``python -m models.train`` and ``run_hyper.py``.

RecBole accepts ``--key=value`` for any config key; flags of our own may be written as
``--flag value`` or ``--flag=value``. Whatever is not a declared flag becomes a config override.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from models.config import parse_value
from models.errors import SeqtuneError


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends a flag's default to its help, unless the help already says it in words ("default: the
    grid size") or there is none (None): argparse's own would add a second "(default: None)"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A command's parser; whatever it does not declare becomes a config override. No abbreviations:
    a config key that is a prefix of a flag (``--seed=2021`` and ``--seeds``) must stay a config key."""
    return argparse.ArgumentParser(
        prog=prog, description=f"{description} Any other --key=value is a config override (RecBole's key names).",
        formatter_class=DefaultsHelpFormatter, allow_abbrev=False)


def parse_with_overrides(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, dict[str, Any]]:
    args, rest = parser.parse_known_args(argv)
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        token = rest[i]
        if not token.startswith("--") or token == "--":
            raise SeqtuneError(f"unexpected argument {token!r}; config overrides take the form --key=value")
        key, sep, value = token[2:].partition("=")
        if not sep:  # "--key value"
            if i + 1 >= len(rest) or rest[i + 1].startswith("--"):
                raise SeqtuneError(f"override --{key} needs a value: --{key}=VALUE")
            value = rest[i + 1]
            i += 1
        overrides[key] = parse_value(value)
        i += 1
    return args, overrides


def split_files(values: Sequence[str] | None) -> list[str]:
    """``--config_files "a.yaml b.yaml"`` (RecBole's form) or repeated values."""
    return [part for value in values or [] for part in value.split() if part]


def run_cli(main: Callable[[], int]) -> None:
    """Run a command: user errors become one line on stderr and exit status 2."""
    try:
        code = main()
    except SeqtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)
