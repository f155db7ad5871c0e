"""Machinery every layer uses, private to odin-ood: argument checks (:mod:`~odin_ood._utils.checks`),
tensors, Datasets and DataLoaders in batches (:mod:`~odin_ood._utils.batching`), files written
without following a symbolic link (:mod:`~odin_ood._utils.files`), the device that runs and the
CLI's OpenMP defaults (:mod:`~odin_ood._utils.devices`: imported before torch), progress bars
that move at every pass of a model (:mod:`~odin_ood._utils.progress`), work done a bounded number
of groups ahead in threads (:mod:`~odin_ood._utils.prefetch`).

The bottom of the import graph: these modules import nothing else of odin-ood.
"""
