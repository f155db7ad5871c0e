"""The HTTP out-of-distribution gate (FastAPI on uvicorn): :mod:`~odin_ood.serving.app` (the
endpoints, request limits, authentication), :mod:`~odin_ood.serving.batcher` (server-side
micro-batching) and :mod:`~odin_ood.serving.protocol` (deadlines on request heads and bodies); the
gate scores on a runtime (:mod:`odin_ood.runtimes`) in fixed-size batches
(:mod:`odin_ood.runtimes.batches`, shared with ``odin-ood score``).

Images become model inputs in :mod:`odin_ood.preprocess`; the ``odin-ood serve`` command that
starts the gate lives with the other commands in :mod:`odin_ood.commands.serve`.

Imports point down: to :mod:`odin_ood.runtimes`, :mod:`odin_ood.detector`, :mod:`odin_ood.models`
(class names) and :mod:`odin_ood.preprocess`; only the ``serve`` command imports this.
"""
