"""``odin-ood score --distributed`` under torchrun: each rank scores its shard, rank 0 merges.

With B the detector's batch size, rank r of W scores the whole batches ``[kB, (k+1)B)`` with
k = r (mod W) (every item exactly once, at the batch position a single process gives it, so the
rows are bit-identical to one process's; see :mod:`odin_ood.commands.rows`) on its own device (``cuda:LOCAL_RANK`` with
NCCL, the CPU with gloo) into its own resumable shard file ``OUT.rank<r>-of-<W>.jsonl`` (its identity record,
``writers.RowWriter.claim``, kept until the merge, so a resumed shard is proven to be this scorer's). The ranks agree
twice with an ``all_reduce(MIN)`` of a 0/1 flag (a tensor: nothing is pickled between processes): that every
rank could open its shard (a refused resume stops every rank before any scores), then that every
rank scored it; only if every rank succeeded does rank 0 merge the shards in input order (batch k is the next B rows
of shard k % W) into the partial output and rename it to ``OUT``. A failed rank thus leaves no ``OUT``;
its finished shards stay for ``--resume`` with the same number of ranks.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from odin_ood._utils.devices import resolve_device
from odin_ood._utils.files import check_output_file
from odin_ood.commands.identity import record_of
from odin_ood.commands.row_files import read_rows
from odin_ood.commands.scoring import Run, ScoreOptions, open_run, score_run
from odin_ood.commands.writers import RowWriter, require_format
from odin_ood.scores import memory


def environment() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) set by torchrun, or None outside it."""
    if "WORLD_SIZE" not in os.environ:
        return None
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


MAX_TIMEOUT = 1e9  # seconds: 31 years


def shard_path(output: Path, rank: int, world: int) -> Path:
    return output.with_name(f"{output.name}.rank{rank}-of-{world}.jsonl")


def run(options: ScoreOptions, output: Path, fmt: str, backend: str | None = None, timeout: float = 3600.0) -> int:
    """Score this rank's shard of ``options``' inputs and, once every rank has, merge the shards
    into ``output`` on rank 0 (module docstring); ``backend`` None: nccl on CUDA, gloo on a CPU;
    ``timeout``: seconds ranks wait for each other. Exit status 1 when a rank failed."""
    env = environment()
    if env is None:
        raise ValueError(
            "--distributed needs torchrun's environment (RANK, WORLD_SIZE): "
            "launch with `torchrun --nproc-per-node N -m odin_ood score --distributed ...`"
        )
    rank, world, local_rank = env
    if not 0 < timeout <= MAX_TIMEOUT:  # timedelta holds no more (nor NaN or infinity)
        raise ValueError(f"--timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}], got {timeout}")
    require_format(fmt)  # rank 0 merges into it: refuse a missing writer before any rank scores
    device = resolve_device(options.model.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    try:
        # two agreements: no rank scores unless every rank could open (and, resuming, prove) its shard
        shard = _reported(rank, world, _open_shard, options, output, rank, world, device)
        if not (
            _agreed(shard is not _FAILED, device, backend)
            and _agreed(
                _reported(rank, world, _score_shard, shard, options, rank, world) is not _FAILED, device, backend
            )
        ):
            if rank == 0:
                print(
                    f"odin-ood score: error: at least one of {world} ranks failed (messages above); "
                    f"{output} was not written; finished shards are kept for --resume",
                    file=sys.stderr,
                )
            return 1
        if rank == 0:
            merge(
                output,
                fmt,
                world,
                options.reading.columns,
                options.chunk,
                quiet=not options.progress,
                overwrite=options.overwrite,
            )
        return 0
    finally:
        dist.destroy_process_group()


_FAILED = object()


def _reported(rank: int, world: int, step: Callable[..., Any], *args: Any) -> Any:
    """``step(*args)``, or ``_FAILED`` after printing why (every rank then learns it by :func:`_agreed`)."""
    try:
        return step(*args)
    except Exception as exc:  # reported, then agreed on by all ranks
        print(f"odin-ood score: rank {rank}/{world} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return _FAILED


def _agreed(ok: bool, device: torch.device, backend: str) -> bool:
    """Whether every rank is ``ok``: one ``all_reduce(MIN)`` of a 0/1 flag."""
    flag = torch.tensor([int(ok)], device=device if backend == "nccl" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _open_shard(options: ScoreOptions, output: Path, rank: int, world: int, device: torch.device) -> Run | None:
    """This rank's run on its own shard file (:func:`odin_ood.commands.scoring.open_run`, the
    identity record kept until the merge); None when ``output`` is already complete."""
    if not options.resume:
        check_output_file(output, options.overwrite, "score", "--output")
    if output.exists() and not options.overwrite:
        return None
    return open_run(options, shard_path(output, rank, world), "jsonl", device, shard=True)


def _score_shard(shard: Run | None, options: ScoreOptions, rank: int, world: int) -> None:
    """Score the rows the shard lacks and publish it (nothing when the output is complete)."""
    if shard is not None:
        score_run(
            shard,
            dataclasses.replace(options, progress=options.progress and rank == 0),
            rank,
            world,
            label=f"rank {rank}/{world}",
        )


def merge(
    output: Path,
    fmt: str,
    world: int,
    columns: tuple[str, ...],
    chunk: int | None = None,
    quiet: bool = False,
    overwrite: bool = False,
) -> None:
    """Interleave the shards into ``output`` in input order (item i is the head of one shard),
    then delete them; ``overwrite``: a finished output of odin-ood's there is replaced."""
    if output.exists() and not overwrite:
        return
    shards = [shard_path(output, r, world) for r in range(world)]
    streams = [read_rows(s, "jsonl") for s in shards]
    heads = [next(s, None) for s in streams]
    writer = RowWriter(output, fmt, resume=False, columns=columns, overwrite=overwrite)
    rows: list[dict[str, Any]] = []
    i = 0
    while any(h is not None for h in heads):
        r, head = next(((r, h) for r, h in enumerate(heads) if h is not None and h["index"] == i), (None, None))
        if r is None or head is None:
            raise RuntimeError(f"shards {shards}: no shard continues with item {i}: not merging")
        rows.append(head)
        heads[r] = next(streams[r], None)
        i += 1
        if len(rows) >= (chunk or memory.MAX_CHUNK):
            writer.write(rows)
            rows = []
    writer.write(rows)
    writer.finish()
    for s in shards:
        s.unlink()
        record_of(s).unlink(missing_ok=True)
    if not quiet:
        print(f"odin-ood score: {i} rows from {world} ranks written to {output}", file=sys.stderr)
