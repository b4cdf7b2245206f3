"""Flags from a config dataclass (tyro), and the one-line errors every command gives.

tyro turns field types into flags (`seed_start: int` -> `--seed-start INT`, `list[str]` -> several values,
`bool` -> `--x/--no-x`) and field comments into their help. It reports bad flag values, and a ValueError raised
by the top-level config's `__post_init__`, in its own error box (exit 2); a ValueError from a nested library
config (e.g. `PanelConfig`, `ExpertConfig`) escapes it, so `parse` turns that into one line too.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NoReturn, Union

import tyro

EXIT_USAGE = 2  # bad input, as argparse and tyro exit


_BOX = "│╭╮╰╯─┃━┏┓┗┛ "


def _one_line(report: str) -> str | None:
    """The message of tyro's error box ("Error parsing --x: ...", wrapped over box lines) as one line."""
    # The box's frame lines (╭ title ╮, ╰ ╯) carry no message; a rule of box characters ends the message.
    lines = [line.strip(_BOX) for line in report.splitlines() if not line.lstrip().startswith(("╭", "╰"))]
    for i, line in enumerate(lines):
        if line.startswith(("Error parsing", "Unrecognized", "Required", "Missing")):
            message = [line]
            for more in lines[i + 1:]:
                if not more:
                    break
                message.append(more)
            text = " ".join(message)
            # "Error parsing EvalConfig: --episodes must be ..." -> the config's own sentence.
            head, sep, rest = text.partition(": ")
            if sep and head.startswith("Error parsing ") and not head.removeprefix("Error parsing ").startswith("-"):
                text = rest
            return text
    return None


def parse[T](config: type[T] | Callable[..., T], argv: Sequence[str] | None, *, prog: str,
          description: str | None) -> T:
    """`tyro.cli(config, args=argv)`, with every bad flag or value reported as ONE line on stderr (exit 2):
    tyro's own error box is reduced to its message, and a bad value found by a nested config is one line too."""
    report = io.StringIO()
    try:
        with contextlib.redirect_stderr(report):
            return tyro.cli(config, args=argv, prog=prog, description=description)
    except ValueError as exc:
        die(prog, str(exc))
    except SystemExit as exc:
        if exc.code in (0, None):  # --help
            sys.stderr.write(report.getvalue())
            raise
        message = _one_line(report.getvalue())
        if message is None:
            sys.stderr.write(report.getvalue())
            raise
        die(prog, f"{message} (see {prog} --help)")


def parse_subcommands(commands: dict[str, tuple[type, str | None]], argv: Sequence[str] | None, *, prog: str,
                      description: str | None) -> Any:
    """`prog NAME [flags]`: NAME -> (config class, its `prog NAME --help` description); errors as in `parse`.

    The same as `tyro.extras.subcommand_cli_from_dict`, which offers no per-subcommand description."""
    choices = tuple(Annotated[config, tyro.conf.subcommand(name, description=doc)]
                    for name, (config, doc) in commands.items())
    return parse(Union[choices], argv, prog=prog, description=description)  # noqa: UP007 (built at runtime)


def error(prog: str, message: str) -> int:
    """Print `prog: error: message` to stderr; returns the exit status for bad input."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def die(prog: str, message: str) -> NoReturn:
    raise SystemExit(error(prog, message))


def check(ok: bool, message: str) -> None:
    """For `__post_init__`: raise ValueError(message) unless `ok` (tyro shows it as a parse error)."""
    if not ok:
        raise ValueError(message)
