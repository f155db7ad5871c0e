"""``odin-ood serve``: run the HTTP gate of :mod:`odin_ood.serving.app` on uvicorn.

    ODIN_OOD_API_KEY=secret odin-ood serve --detector det/ --model mnist-mlp --port 8000

Binds to 127.0.0.1 unless ``--host`` says otherwise. The API key comes from ``--api-key`` or,
better (it stays out of the process list), the environment variable ODIN_OOD_API_KEY.
"""

from __future__ import annotations

import argparse
import os
import sys

from odin_ood.serving.engine import add_model_arguments, load_detector
from odin_ood.serving.options import ModelOptions

API_KEY_ENV = "ODIN_OOD_API_KEY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch", type=int, default=64, help="images per micro-batch (the fixed batch size)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a micro-batch waits to fill")
    parser.add_argument("--no-padding", action="store_true",
                        help="run micro-batches at their natural size (faster when idle; scores may then "
                             "differ from the library's in the last float bits)")
    parser.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--max-images", type=int, default=64, help="images per request")
    parser.add_argument("--api-key", default=None, help=f"required X-API-Key header (default: ${API_KEY_ENV})")
    parser.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from odin_ood.serving.app import Limits, create_app

    for name in ("max_batch", "max_body_bytes", "max_images"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    detector, spec = load_detector(ModelOptions.from_args(args), args.detector)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    app = create_app(
        detector, spec, Limits(args.max_body_bytes, args.max_images), api_key=api_key,
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, pad=not args.no_padding, model_name=str(args.model),
    )
    print(f"odin-ood serve: {args.model} on http://{args.host}:{args.port} "
          f"(API key {'required' if api_key else 'off'})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
