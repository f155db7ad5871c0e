"""The `odin-ood` command line: thin wrappers over the library.

OpenMP defaults are set first, before torch is loaded (:mod:`odin_ood._utils.devices`: a passive wait
policy, so a busy CPU does not slow multi-threaded scoring several-fold). Each subcommand lives in the module that owns
its concept and exposes ``add_arguments(parser)`` and ``run(args) -> int``; this file only wires them up, importing only
the module of the command that runs (``odin-ood --help`` loads no torch). Command modules keep
heavy optional imports (FastAPI, matplotlib) inside ``run`` so every command works with only the
core dependencies installed, and starts without what it does not use (tests/test_cli_startup.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from odin_ood._utils.devices import set_cpu_env_defaults

set_cpu_env_defaults()  # before any command module imports torch (OpenMP reads it once, at load)

from odin_ood._utils import extras  # noqa: E402 -- after set_cpu_env_defaults(): OpenMP reads its settings once, at load
from odin_ood._version import __version__  # noqa: E402 -- after set_cpu_env_defaults(): OpenMP reads its settings once, at load

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("odin_ood.demo", "run the whole ODIN pipeline offline on the shipped MNIST model and sample"),
    "train": ("odin_ood.commands.train", "train a network of the paper with its recipe (resumable)"),
    "datasets": ("odin_ood.data.registry", "list the datasets that odin_ood.data.load knows"),
    "fit": ("odin_ood.commands.fit", "fit an ODIN detector for any classifier on image folders, zips or datasets"),
    "score": ("odin_ood.commands.score", "score image folders, zips or datasets into CSV/JSONL/Parquet (resumable)"),
    "serve": ("odin_ood.commands.serve", "run the HTTP out-of-distribution gate (FastAPI on uvicorn)"),
    "export": (
        "odin_ood.commands.export",
        "write a fitted detector as one ONNX graph (pixels -> class, score, decision)",
    ),
    "reproduce": ("odin_ood.commands.reproduce", "run a suite of the paper's experiments into an HTML report"),
    "doctor": (
        "odin_ood.commands.doctor",
        "say which optional extras, versions, device and data root this installation has",
    ),
}


class _Parser(argparse.ArgumentParser):
    def format_help(self) -> str:  # the extras are looked up only when the help is shown
        return f"{super().format_help()}\n{extras.summary()}\n"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command``, only that subcommand gets its arguments, so a run
    imports the one command module it needs (the others stay listed, with their help lines)."""
    parser = _Parser(prog="odin-ood", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--version", action="version", version=f"odin-ood {__version__}", help="print the version and exit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if command is None or command == name:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((a for a in argv if not a.startswith("-")), ""))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from odin_ood._utils.checks import command_line_wording  # here: it loads torch, which --help does not need

    try:
        with command_line_wording():  # errors name --flags, not Python arguments
            return int(importlib.import_module(args._module).run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"odin-ood {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a package of an optional extra that no require() named first
        line = extras.missing_extra_line(exc, f"odin-ood {args.command}")
        if line is None:
            raise
        print(f"odin-ood {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
