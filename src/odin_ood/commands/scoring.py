"""One ``odin-ood score`` run as plain values, and the one sequence every engine runs.

:class:`ScoreOptions` is built once from the parsed arguments (``ScoreOptions.from_args``, in
:func:`odin_ood.commands.score.run`); below it nothing takes an ``argparse.Namespace``. A run is
:func:`open_run` (the output writer made, which refuses what it must not touch, the detector and
its runtime loaded, the inputs listed, the writer claimed for this scorer so that a resumed output
is proven to be its own) then :func:`score_run` (the rows it lacks scored, the output published):
one process (:mod:`odin_ood.commands.score`) and each torchrun rank
(:mod:`odin_ood.commands.distributed`, on its shard) run the same two steps. :func:`report` says
what a run wrote, for every engine (Ray's too: :mod:`odin_ood.commands.ray_engine`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from odin_ood.commands.identity import score_identity
from odin_ood.commands.input_options import InputOptions
from odin_ood.commands.inputs import Inputs
from odin_ood.commands.loading import load_scorer
from odin_ood.commands.options import ModelOptions
from odin_ood.commands.rows import Tally, score_inputs
from odin_ood.commands.writers import RowWriter
from odin_ood.preprocess.spec import Preprocessing
from odin_ood.runtimes import Runtime


@dataclass(frozen=True)
class ScoreOptions:
    """What to score and how: the model and detector (``model``, ``detector``, ``runtime``), the
    inputs (``reading``), ``resume``, ``overwrite`` (a finished output of odin-ood's is replaced
    when the new one is published), ``chunk`` (None: what half of ``--max-memory`` holds),
    decoding ``workers`` and whether to show ``progress``."""

    model: ModelOptions
    detector: str
    reading: InputOptions
    runtime: str = "torch"
    resume: bool = False
    chunk: int | None = None
    workers: int = 4
    progress: bool = True
    overwrite: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ScoreOptions:
        if args.chunk is not None and args.chunk < 1:
            raise ValueError(f"--chunk must be >= 1, got {args.chunk}")
        return cls(
            ModelOptions.from_args(args),
            args.detector,
            InputOptions.from_args(args),
            args.runtime,
            args.resume,
            args.chunk,
            args.workers,
            not args.quiet,
            args.overwrite,
        )


class Run(NamedTuple):
    """An opened run: the scorer, its preprocessing, the listed inputs and the claimed writer."""

    runtime: Runtime
    spec: Preprocessing
    inputs: Inputs
    writer: RowWriter


def open_run(
    options: ScoreOptions, output: Path, fmt: str, device: torch.device | None = None, shard: bool = False
) -> Run:
    """The writer of ``output`` (refusing a link, a foreign file or, without ``resume`` or
    ``overwrite``, an existing output), the detector on its runtime, the inputs listed, and the
    writer claimed for this scorer (a resumed output must be this scorer's). ``shard``: a torchrun
    rank's shard, which keeps its identity record until the merge (the merge replaces the output)."""
    reading = options.reading
    writer = RowWriter(
        output,
        fmt,
        resume=options.resume,
        keep_record=shard,
        columns=reading.columns,
        overwrite=options.overwrite and not shard,
    )
    runtime, spec = load_scorer(options.model, options.detector, options.runtime, device)
    inputs = reading.open()
    writer.claim(
        score_identity(runtime, spec, reading.max_image_bytes, reading.follow_symlinks, reading.formats_identity())
    )
    return Run(runtime, spec, inputs, writer)


def score_run(run: Run, options: ScoreOptions, rank: int = 0, world: int = 1, label: str = "scoring") -> Tally:
    """Score the rows ``run``'s output lacks (shard ``rank`` of ``world``) and publish it."""
    tally = score_inputs(
        run.runtime,
        run.spec,
        run.inputs,
        run.writer,
        rank,
        world,
        options.chunk,
        options.workers,
        progress=options.progress,
        label=label,
        max_memory=options.model.max_memory,
    )
    run.writer.finish()
    return tally


def report(tally: Tally, rows: int, output: Path, quiet: bool) -> int:
    """Say what this run wrote; exit status 1 when it had images to score and could score none."""
    if tally.not_finite:
        print(
            f"odin-ood score: {tally.not_finite} of {tally.rows} images have a score that is not finite: "
            "out-of-distribution, see the error column (the model outputs NaN or infinity on them)",
            file=sys.stderr,
        )
    if tally.rows and tally.failed == tally.rows:
        print(
            f"odin-ood score: error: none of the {tally.rows} images could be scored, e.g. {tally.first_error} "
            f"(every row of {output} is an error row)",
            file=sys.stderr,
        )
        return 1
    if tally.failed:
        print(
            f"odin-ood score: {tally.failed} of {tally.rows} images could not be scored: "
            f"see the error column of {output}",
            file=sys.stderr,
        )
    if not quiet:
        print(f"odin-ood score: {rows} rows in {output}", file=sys.stderr)
    return 0
