"""Scoring beyond one process, on engines other than torchrun (which lives in
:mod:`odin_ood.commands.distributed`): Ray Data (:mod:`odin_ood.scaling.ray_data`).

:class:`RayScorer` is the public entry point: a callable class for ``ray.data.Dataset.map_batches``
that scores any Ray Dataset of images or arrays with a fitted detector loaded once per actor.
``ray`` itself is an optional extra (``pip install 'odin-ood[ray]'``), imported only where a Ray
pipeline is built. Imports point down: this package reads inputs, scores rows and writes them with
:mod:`odin_ood.commands` (inputs, rows, writers, loading); only the ``score`` command imports it.
"""

from odin_ood.scaling.ray_data import RayScorer

__all__ = ["RayScorer"]
