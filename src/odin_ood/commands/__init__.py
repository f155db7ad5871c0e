"""The ``odin-ood`` commands. On a user's own model and files: ``fit``
(:mod:`~odin_ood.commands.fit`, held-out splits in :mod:`~odin_ood.commands.heldout`, held-out metrics and
what it prints in :mod:`~odin_ood.commands.fit_evaluation`), ``score`` (:mod:`~odin_ood.commands.score`: rows
in :mod:`~odin_ood.commands.rows`, resumable output files in :mod:`~odin_ood.commands.writers`, their formats
read back in :mod:`~odin_ood.commands.row_files`, torch.distributed in :mod:`~odin_ood.commands.distributed`) and
``serve`` (:mod:`~odin_ood.commands.serve`, which starts :mod:`odin_ood.serving`), both on the
scoring runtime ``--runtime`` names (:mod:`odin_ood.runtimes`); ``export`` (:mod:`~odin_ood.commands.export`:
the gate as one ONNX file, :mod:`odin_ood.export`). On the paper's
networks: ``train`` (:mod:`~odin_ood.commands.train`, the recipes of :mod:`odin_ood.training`) and
``reproduce`` (:mod:`~odin_ood.commands.reproduce`, the suites of :mod:`odin_ood.experiments`).
``demo`` and ``datasets`` live with what they show (:mod:`odin_ood.demo`, :mod:`odin_ood.data.registry`).

Shared by fit, score and serve: the model options (:mod:`~odin_ood.commands.options`), loading a fitted
detector and its runtime (:mod:`~odin_ood.commands.loading`) and the input sources: folders, zips, dataset names
(:mod:`~odin_ood.commands.inputs`), WebDataset shards (:mod:`~odin_ood.commands.webdataset`) and Parquet files
(:mod:`~odin_ood.commands.parquet_images`), read through :mod:`~odin_ood.commands.listing`. One ``score`` run is
:mod:`~odin_ood.commands.scoring`'s two steps, the same in one process and on each torchrun rank;
``score --engine ray`` runs on Ray Data (:mod:`~odin_ood.commands.ray_data`, whose :class:`RayScorer` is public as
:class:`odin_ood.scaling.RayScorer`). Each command module has ``add_arguments(parser)`` and ``run(args)``, which
turns the parsed arguments into plain values or a frozen options dataclass
(:class:`~odin_ood.commands.options.ModelOptions`, :class:`~odin_ood.commands.input_options.InputOptions`,
:class:`~odin_ood.commands.scoring.ScoreOptions`); below them nothing takes an ``argparse.Namespace``.

The top of the import graph with :mod:`odin_ood.serving`: imports point down, to every library package;
only :mod:`odin_ood.cli` and :mod:`odin_ood.scaling` import this.
"""
