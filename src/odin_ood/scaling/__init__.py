"""Scoring beyond one process, on engines other than torchrun (which lives in
:mod:`odin_ood.commands.distributed`): Ray Data.

:class:`RayScorer` is the public entry point: a callable class for ``ray.data.Dataset.map_batches``
that scores any Ray Dataset of images or arrays with a fitted detector loaded once per actor.
``ray`` itself is an optional extra (``pip install 'odin-ood[ray]'``), imported only where a Ray
pipeline is built. It lives with what it reuses, ``odin-ood score``'s inputs, rows and writers
(:mod:`odin_ood.commands.ray_data`, beside ``score --engine ray``); this package names it, so
imports point one way: scaling -> commands, never back.
"""

from odin_ood.commands.ray_data import RayScorer

__all__ = ["RayScorer"]
