"""The HTTP out-of-distribution gate (FastAPI on uvicorn): :mod:`~odin_ood.serving.app` (the
endpoints, request limits, authentication), :mod:`~odin_ood.serving.batcher` (server-side
micro-batching), :mod:`~odin_ood.serving.protocol` (deadlines on request heads and bodies) and
:mod:`~odin_ood.serving.engine` (scoring in fixed-size batches, shared with ``odin-ood score``).

Images become model inputs in :mod:`odin_ood.preprocess`; the ``odin-ood serve`` command that
starts the gate lives with the other commands in :mod:`odin_ood.commands.serve`.
"""
