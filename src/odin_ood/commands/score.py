"""``odin-ood score``: score image folders, zips or datasets into a CSV, JSONL or Parquet file.

    odin-ood score --detector det/ --model mnist-mlp digits/ more.zip mnist --output scores.csv

One row per image (see :mod:`odin_ood.commands.rows`), inputs in a deterministic order (see
:mod:`odin_ood.commands.inputs`; WebDataset shards and Parquet files add a ``label`` column),
streamed in chunks (``--chunk``, else as many images as half of ``--max-memory`` holds
decoded, :mod:`odin_ood.memory`) with a progress bar and a throughput line,
resumable with ``--resume`` (see :mod:`odin_ood.commands.writers`). ``--distributed`` under
torchrun splits the work across processes (see :mod:`odin_ood.commands.distributed`); this
module also runs as ``python -m odin_ood.commands.score``. ``--engine ray`` scores on Ray Data
instead (:mod:`odin_ood.commands.ray_engine`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from odin_ood.commands import distributed, ray_engine
from odin_ood.commands.loading import add_detector_arguments as add_model_arguments, load_scorer
from odin_ood.commands.input_options import InputOptions, add_input_arguments
from odin_ood.commands.inputs import MAX_IMAGE_BYTES
from odin_ood.commands.options import ModelOptions
from odin_ood.commands.identity import score_identity
from odin_ood.commands.ray_engine import add_ray_arguments
from odin_ood.commands.rows import Tally, score_inputs
from odin_ood.commands.writers import RowWriter, output_format


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image folder, .zip, image file, IDX file, WebDataset .tar shards (a file, a folder of "
                             "them or a brace pattern data-{000..009}.tar), .parquet file, or dataset name[:split]")
    parser.add_argument("--output", required=True, help="scores file: .csv, .jsonl or .parquet")
    add_model_arguments(parser)
    parser.add_argument("--data-root", default=None, help="data folder for dataset names (default: $ODIN_OOD_DATA)")
    parser.add_argument("--resume", action="store_true", help="keep the rows of an interrupted run and continue")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished --output of odin-ood's, kept until the new one is complete "
                             "(with --resume: continue an interrupted replacement)")
    parser.add_argument("--chunk", type=int, default=None,
                        help="images decoded, scored and written at a time, rounded up to whole batches "
                             "(default: what half of --max-memory holds, at most 4096)")
    parser.add_argument("--max-image-bytes", type=int, default=MAX_IMAGE_BYTES,
                        help="largest image file or zip member read; larger ones get an error row (default: 32 MiB)")
    parser.add_argument("--follow-symlinks", action="store_true",
                        help="follow symbolic links that leave an input folder (default: give them an error row)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="image decoding threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or throughput line")
    parser.add_argument("--distributed", action="store_true", help="one shard per torchrun process")
    parser.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                        help="torch.distributed backend (default: nccl on CUDA, gloo on CPU)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds ranks wait for each other")
    add_input_arguments(parser)
    add_ray_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.chunk is not None and args.chunk < 1:
        raise ValueError(f"--chunk must be >= 1, got {args.chunk}")
    ray_engine.check_engine_flags(args)
    if args.engine == "ray":
        return ray_engine.run(args)
    output = Path(args.output)
    fmt = output_format(output)
    env = distributed.environment()
    if args.distributed:
        return distributed.run(args, output, fmt)
    if env is not None and env[1] > 1:
        raise ValueError(f"started by torchrun with WORLD_SIZE={env[1]}: pass --distributed, "
                         "or every process would score everything")
    reading = InputOptions.from_args(args)
    writer = RowWriter(output, fmt, resume=args.resume, columns=reading.columns, overwrite=args.overwrite)
    runtime, spec = load_scorer(ModelOptions.from_args(args), args.detector, args.runtime)
    inputs = reading.open()
    writer.claim(score_identity(runtime, spec, args.max_image_bytes, args.follow_symlinks, reading.formats_identity()))
    tally = score_inputs(runtime, spec, inputs, writer, chunk=args.chunk, workers=args.workers,
                         progress=not args.quiet, max_memory=args.max_memory)
    writer.finish()
    return report(tally, writer.done, output, args.quiet)


def report(tally: Tally, rows: int, output: Path, quiet: bool) -> int:
    """Say what this run wrote; exit status 1 when it had images to score and could score none."""
    if tally.not_finite:
        print(f"odin-ood score: {tally.not_finite} of {tally.rows} images have a score that is not finite: "
              "out-of-distribution, see the error column (the model outputs NaN or infinity on them)", file=sys.stderr)
    if tally.rows and tally.failed == tally.rows:
        print(f"odin-ood score: error: none of the {tally.rows} images could be scored, e.g. {tally.first_error} "
              f"(every row of {output} is an error row)", file=sys.stderr)
        return 1
    if tally.failed:
        print(f"odin-ood score: {tally.failed} of {tally.rows} images could not be scored: "
              f"see the error column of {output}", file=sys.stderr)
    if not quiet:
        print(f"odin-ood score: {rows} rows in {output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from odin_ood.cli import main as cli_main

    return cli_main(["score", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
