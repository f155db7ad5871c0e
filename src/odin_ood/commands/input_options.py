"""What ``odin-ood score`` reads, as one plain value: the input arguments and how they are read.

:class:`InputOptions` is built once from the parsed arguments (``InputOptions.from_args``) and
opens the same :class:`~odin_ood.commands.inputs.Inputs` wherever the scoring runs: this process,
each torchrun rank, or each Ray worker (it is a frozen dataclass of plain values, so it pickles).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from odin_ood.commands.inputs import MAX_IMAGE_BYTES, Inputs, labelled
from odin_ood.commands.row_files import COLUMNS, LABELLED
from odin_ood.scores.memory import DEFAULT_MAX_MEMORY


@dataclass(frozen=True)
class InputOptions:
    """The ``arguments`` (folders, zips, files, shards, Parquet files, dataset names) and the
    options of :class:`~odin_ood.commands.inputs.Inputs`; ``limit``: the first images only;
    ``precision``: the scoring precision, a column of every row below fp32."""

    arguments: tuple[str, ...]
    data_root: str | None = None
    max_image_bytes: int = MAX_IMAGE_BYTES
    follow_symlinks: bool = False
    image_column: str = "image"
    label_column: str = "label"
    max_memory: int = DEFAULT_MAX_MEMORY
    limit: int | None = None
    precision: str = "fp32"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> InputOptions:
        return cls(
            tuple(args.inputs),
            args.data_root,
            args.max_image_bytes,
            args.follow_symlinks,
            args.image_column,
            args.label_column,
            args.max_memory,
            args.limit,
            getattr(args, "precision", "fp32"),
        )

    def open(self) -> Inputs:
        """The inputs, listed."""
        return Inputs(
            self.arguments,
            self.data_root,
            self.max_image_bytes,
            self.follow_symlinks,
            self.max_memory,
            self.image_column,
            self.label_column,
            self.limit,
        )

    def formats_identity(self) -> dict[str, Any] | None:
        """What decides the rows of shards and Parquet files beyond folders' options, for the
        identity a resumed output must match (:func:`odin_ood.commands.identity.score_identity`):
        the Parquet columns and the row group budget. None without shards or Parquet inputs."""
        if not labelled(self.arguments):
            return None
        return {
            "image_column": self.image_column,
            "label_column": self.label_column,
            "parquet_row_group_bytes": max(1, self.max_memory // 4),
        }

    @property
    def columns(self) -> tuple[str, ...]:
        """The output's columns: one more, ``label``, when an input is shards or Parquet; one
        more, ``precision``, when scoring below fp32 (an fp32 run's rows are as they always were)."""
        columns = LABELLED if labelled(self.arguments) else COLUMNS
        return columns if self.precision == "fp32" else (*columns, "precision")


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the formats large image sets come in, and ``--limit``."""
    parser.add_argument(
        "--image-column",
        default="image",
        help="Parquet inputs: the column of encoded images, bytes or {bytes, path} structs (default: image)",
    )
    parser.add_argument(
        "--label-column",
        default="label",
        help="Parquet inputs: the integer column carried into the rows as label, when present "
        "(default: label; '' for none)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="score the first N images only (in input order; later inputs are not even listed)",
    )
