"""The ``cellpol`` command line: one entry point with subcommands.

Each subcommand lives in its own module exposing ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code.

Whatever goes wrong, the user sees one line: bad input and unwritable outputs
exit with 2, bugs with 1. Outputs are checked for writability before the work
starts, and Python warnings raised during a command are summed up in one line
instead of being printed one by one.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

from .. import __version__
from ..errors import Cancelled, InputError

# Subcommand modules, in the order `cellpol --help` lists them.
COMMANDS = ["info", "phantom", "convert", "predict", "evaluate", "stats", "train", "tune", "gan"]

# What each command writes: (argument name, True for a folder / False for a file).
_OUTPUTS = {
    "phantom": ("outdir", True), "convert": ("output", False), "predict": ("output", True),
    "evaluate": ("output", False), "stats": ("output", True), "train": ("output", True),
    ("gan", "train"): ("output", True), ("gan", "generate"): ("output", True),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellpol",
        description="Cell polarity vectors from 3D/2D fluorescence microscopy images.",
    )
    parser.add_argument("--version", action="version", version=f"cellpol {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).register(sub)
    return parser


def check_outputs(args):
    """Raise :class:`OutputError` before any work when the command's output cannot be written."""
    from ..io.atomic import check_writable

    key = (args.command, getattr(args, "gan_command", None))
    spec = _OUTPUTS.get(key) or _OUTPUTS.get(args.command)
    if spec is not None and getattr(args, spec[0], None):
        check_writable(getattr(args, spec[0]), folder=spec[1])
    if args.command == "tune" and Path(args.model).is_dir():  # tuning writes into the model
        check_writable(args.model, folder=True)


def _warning_line(caught) -> str:
    first = caught[0]
    text = str(first.message).strip().splitlines()
    more = f" (and {len(caught) - 1} more)" if len(caught) > 1 else ""
    return (f"{first.category.__name__}: {text[0] if text else ''}{more}; the input may hold "
            "extreme or degenerate values (--debug shows where)")


def main(argv=None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure, 2 bad input, 130 cancelled)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or "--debug" in argv
    name = f"cellpol {args.command}"
    try:
        with warnings.catch_warnings(record=not debug) as caught:
            check_outputs(args)
            code = int(args.func(args) or 0)
        if caught:
            print(f"{name}: warning: {_warning_line(caught)}", file=sys.stderr)
        return code
    except InputError as exc:  # OutputError included
        if debug:
            raise
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print(f"{name}: cancelled", file=sys.stderr)
        return 130
    except OSError as exc:  # a file problem that no writer translated: still the user's to fix
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if debug:
            raise
        print(f"{name}: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
