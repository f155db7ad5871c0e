"""``odin-ood score --engine ray``: the command-line side of :mod:`odin_ood.commands.ray_data`.

    odin-ood score --engine ray --detector det/ --model mnist-mlp shards/ --output scores.parquet
    odin-ood score --engine ray --ray-address ray://head:10001 --ray-workers 8 ... --ray-writer parquet --output out/

A local Ray cluster is started for the run unless ``--ray-address`` (or ``$RAY_ADDRESS``) names
one; the inputs must be readable at the same paths on every node (a shared filesystem), as for
torchrun. Rows are written by this process with odin-ood's resumable writer (the same file as
without Ray, ``--resume`` included), or with ``--ray-writer parquet|csv`` by the workers through
Ray Data's writers into the folder ``--output``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from odin_ood._utils import extras
from odin_ood.commands.ray_data import RayOptions, score_on_ray
from odin_ood.commands.scoring import ScoreOptions, report

RAY_FLAGS = {"ray_address": "--ray-address", "ray_workers": "--ray-workers", "ray_writer": "--ray-writer"}


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (one shard per torchrun process with --distributed); ray: Ray "
        "Data actors, scheduled dynamically and retried when one dies "
        "(pip install 'odin-ood[ray]')",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="a running Ray cluster (default: $RAY_ADDRESS, else a local cluster started for this run)",
    )
    parser.add_argument(
        "--ray-workers",
        type=int,
        default=None,
        help="scoring actors (default: one per CPU of the cluster; one per GPU on CUDA)",
    )
    parser.add_argument(
        "--ray-writer",
        choices=("parquet", "csv"),
        default=None,
        help="write with Ray Data's writer: --output is a new folder of Parquet or CSV files "
        "written by the workers (rows keep their index; not resumable)",
    )


def check_engine_flags(args: argparse.Namespace) -> None:
    """A Ray flag without ``--engine ray`` would do nothing: refused."""
    given = [flag for name, flag in RAY_FLAGS.items() if getattr(args, name) is not None]
    if args.engine != "ray" and given:
        raise ValueError(f"{', '.join(given)} need --engine ray")
    if args.engine == "ray" and args.distributed:
        raise ValueError("--engine ray and --distributed (torchrun) are two engines: pass one")


def run(options: ScoreOptions, ray_options: RayOptions, output: Path) -> int:
    """Score ``options``' inputs on Ray Data into ``output``
    (:func:`odin_ood.commands.ray_data.score_on_ray`) and say what it wrote."""
    extras.import_optional("ray.data", "ray", "--engine ray")

    tally, rows = score_on_ray(
        options.model,
        options.detector,
        options.reading,
        output,
        ray_options,
        options.runtime,
        options.chunk,
        options.resume,
        options.workers,
        options.progress,
        overwrite=options.overwrite,
    )
    return report(tally, rows, output, not options.progress)
