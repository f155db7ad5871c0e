"""Deploying a fitted detector: ``odin-ood score`` (files, resumable, torch.distributed) and
``odin-ood serve`` (an HTTP gate with server-side micro-batching).

Shared by both: :mod:`~odin_ood.serving.preprocess` (bytes or arrays -> model input, limits
checked before decoding) and :mod:`~odin_ood.serving.engine` (loading a detector from command
line arguments; scoring in fixed-size batches so results do not depend on batch composition).
"""
