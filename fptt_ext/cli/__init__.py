"""The ``fptt-ext`` command line.

Subcommands are registered in :data:`COMMANDS` as ``name -> (help, add_arguments,
run)``: ``add_arguments(parser)`` declares the flags, ``run(args)`` does the work
and returns an exit code. Add a subcommand with :func:`register_command`.
Bad input (``ValueError``, ``FileNotFoundError``, argparse errors) prints one
line to stderr and exits with code 2, without a traceback. The ``fptt-ext`` program
(:func:`run`) flushes subnormal floats to zero for the whole process, before torch starts its
threads (:mod:`fptt_ext.floatmode`); :func:`main` called from Python leaves the mode alone.

Usage::

    fptt-ext addtask --T 1000 --method fptt --model ltc --out runs/addtask/fptt-ltc
    fptt-ext addtask-plot runs/addtask/* --out runs/addtask/loss.png

Example:
    >>> main(["addtask", "--T", "1"])       # the message goes to stderr
    2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

__all__ = ["COMMANDS", "UsageError", "build_parser", "main", "register_command", "run"]


class UsageError(Exception):
    """Raised (instead of printing usage and exiting) when argparse rejects the input.

    Example:
        >>> try:
        ...     build_parser().parse_args(["--no-such-flag"])
        ... except UsageError as err:
        ...     print(str(err)[:27])
        fptt-ext: error: unrecogniz
    """


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def register_command(name: str, help: str, add_arguments, run) -> None:
    """Add a subcommand: ``add_arguments(parser)`` then ``run(args) -> exit code``.

    Example:
        >>> def add_arguments(p):
        ...     p.add_argument("--name", default="world")
        >>> register_command("hello", "print a greeting", add_arguments, lambda args: print("hello", args.name) or 0)
        >>> main(["hello", "--name", "LTC"])
        hello LTC
        0
        >>> del COMMANDS["hello"]
    """
    COMMANDS[name] = (help, add_arguments, run)


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type=``: an integer >= ``minimum``; argparse names the option in its message.

    >>> _int_at_least(2)("5")
    5
    >>> main(["addtask", "--T", "1"])               # prints: ... argument --T: expected an integer >= 2, got 1
    2
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)


def _clip(text: str) -> float | None:
    """``--clip NORM``: a gradient-norm bound > 0, or 0 for no clipping (``None``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (0 turns clipping off), got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite norm >= 0 (0 turns clipping off), got {text}")
    return value or None



def _set_threads(n) -> None:
    if n is not None:
        import torch

        torch.set_num_threads(n)


def build_parser() -> argparse.ArgumentParser:
    """The ``fptt-ext`` argument parser, with one subparser per registered command.

    >>> args = build_parser().parse_args(["addtask", "--T", "50", "--method", "bptt"])
    >>> args.command, args.T, args.method
    ('addtask', 50, 'bptt')
    """
    from .. import __version__

    parser = _Parser(prog="fptt-ext", description="Liquid time-constant SNNs trained with FPTT.")
    parser.add_argument("--version", action="version", version=f"fptt-ext {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fptt-ext`` / ``python -m fptt_ext``; returns the exit code.

    Example:
        >>> main(["addtask", "--T", "1"])               # bad input: one line on stderr, exit code 2
        2
    """
    parser, args = build_parser(), None
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return args._run(args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"fptt-ext {getattr(args, 'command', None) or ''}: error: {e}".replace(" :", ":"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fptt-ext: interrupted", file=sys.stderr)
        return 130


def run(argv: list[str] | None = None):
    """The ``fptt-ext`` program: subnormal floats flushed to zero for the whole process (set
    before torch starts its threads, which inherit it), then :func:`main`; exits with its code.

    Example:
        >>> from fptt_ext.floatmode import flush_subnormals
        >>> with flush_subnormals(False):           # (restores this process's mode afterwards)
        ...     try:
        ...         run(["addtask", "--T", "1"])
        ...     except SystemExit as e:
        ...         print(e.code)
        2
    """
    import torch

    torch.set_flush_denormal(True)  # the process is this program's: see fptt_ext.floatmode
    sys.exit(main(argv))


# The subcommands register themselves on import (after register_command exists).
from . import addtask, bench, detect, events, train, zoo  # noqa: F401
