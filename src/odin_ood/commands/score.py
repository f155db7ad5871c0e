"""``odin-ood score``: score image folders, zips or datasets into a CSV, JSONL or Parquet file.

    odin-ood score --detector det/ --model mnist-mlp digits/ more.zip mnist --output scores.csv

One row per image (see :mod:`odin_ood.commands.rows`), inputs in a deterministic order (see
:mod:`odin_ood.commands.inputs`; WebDataset shards and Parquet files add a ``label`` column),
streamed in chunks (``--chunk``, else as many images as half of ``--max-memory`` holds
decoded, :mod:`odin_ood.scores.memory`) with a progress bar and a throughput line,
resumable with ``--resume`` (see :mod:`odin_ood.commands.writers`); one run is
:mod:`odin_ood.commands.scoring`'s two steps. ``--distributed`` under
torchrun splits the work across processes (see :mod:`odin_ood.commands.distributed`; under
torchrun it runs as ``-m odin_ood score``). ``--engine ray`` scores on Ray Data
instead (:mod:`odin_ood.commands.ray_engine`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from odin_ood.commands import distributed, ray_engine
from odin_ood.commands.input_options import add_input_arguments
from odin_ood.commands.inputs import MAX_IMAGE_BYTES
from odin_ood.commands.loading import add_detector_arguments
from odin_ood.commands.ray_engine import add_ray_arguments
from odin_ood.commands.row_files import output_format
from odin_ood.commands.scoring import ScoreOptions, open_run, report, score_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image folder, .zip, image file, IDX file, WebDataset .tar shards (a file, a folder of "
        "them or a brace pattern data-{000..009}.tar), .parquet file, or dataset name[:split]",
    )
    parser.add_argument("--output", required=True, help="scores file: .csv, .jsonl or .parquet")
    add_detector_arguments(parser)
    parser.add_argument("--data-root", default=None, help="data folder for dataset names (default: $ODIN_OOD_DATA)")
    parser.add_argument("--resume", action="store_true", help="keep the rows of an interrupted run and continue")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished --output of odin-ood's, kept until the new one is complete "
        "(with --resume: continue an interrupted replacement)",
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="images decoded, scored and written at a time, rounded up to whole batches "
        "(default: what half of --max-memory holds, at most 4096)",
    )
    parser.add_argument(
        "--max-image-bytes",
        type=int,
        default=MAX_IMAGE_BYTES,
        help="largest image file or zip member read; larger ones get an error row (default: 32 MiB)",
    )
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="follow symbolic links that leave an input folder (default: give them an error row)",
    )
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="image decoding threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or throughput line")
    parser.add_argument("--distributed", action="store_true", help="one shard per torchrun process")
    parser.add_argument(
        "--backend",
        choices=("gloo", "nccl"),
        default=None,
        help="torch.distributed backend (default: nccl on CUDA, gloo on CPU)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds ranks wait for each other")
    add_input_arguments(parser)
    add_ray_arguments(parser)


def run(args: argparse.Namespace) -> int:
    ray_engine.check_engine_flags(args)
    options = ScoreOptions.from_args(args)
    output = Path(args.output)
    if args.engine == "ray":
        return ray_engine.run(
            options, ray_engine.RayOptions(args.ray_address, args.ray_workers, args.ray_writer), output
        )
    fmt = output_format(output)
    if args.distributed:
        return distributed.run(options, output, fmt, args.backend, args.timeout)
    env = distributed.environment()
    if env is not None and env[1] > 1:
        raise ValueError(
            f"started by torchrun with WORLD_SIZE={env[1]}: pass --distributed, or every process would score everything"
        )
    opened = open_run(options, output, fmt)
    tally = score_run(opened, options)
    return report(tally, opened.writer.done, output, not options.progress)
