"""``odin-ood serve``: run the HTTP gate of :mod:`odin_ood.serving.app` on uvicorn.

    ODIN_OOD_API_KEY=secret odin-ood serve --detector det/ --model mnist-mlp --port 8000

Binds to 127.0.0.1 unless ``--host`` says otherwise. The API key comes from ``--api-key`` or,
better (it stays out of the process list), the environment variable ODIN_OOD_API_KEY; it is
UTF-8, and a key set but empty (a missing secret) is an error, never "no authentication":
serving without a key takes an explicit ``--no-auth``.

Slow or idle clients are bounded: a connection must send a whole request head within
``--header-timeout`` seconds of opening (or of its previous answer) and the body within
``--body-timeout``; idle keep-alive connections close after ``--timeout-keep-alive``; beyond
``--limit-concurrency`` connections or requests, new requests get 503 at once; a request head
may not exceed ``--h11-max-incomplete-event-size`` bytes. For the open internet, put a reverse
proxy (nginx, Caddy, a cloud load balancer) in front to terminate TLS and absorb slow clients.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import sys

from odin_ood._utils import extras
from odin_ood._utils.checks import short
from odin_ood.commands.loading import add_detector_arguments, load_detector
from odin_ood.commands.options import ModelOptions
from odin_ood.detector import check_batch_size
from odin_ood.runtimes import runtime_budget
from odin_ood.scores import memory

API_KEY_ENV = "ODIN_OOD_API_KEY"
SERVE_BATCH = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_detector_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="images per micro-batch, the fixed batch size (default: what half of --max-memory "
        "allows on the runtime, at most 64)",
    )
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a micro-batch waits to fill")
    parser.add_argument(
        "--no-padding",
        action="store_true",
        help="run micro-batches at their natural size on --runtime torch (faster when idle; scores "
        "may then differ from the library's in the last float bits); the graph runtimes always do",
    )
    parser.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024, help="multipart body limit (16 MiB)")
    parser.add_argument("--max-json-bytes", type=int, default=4 * 1024 * 1024, help="JSON body limit (4 MiB)")
    parser.add_argument("--max-images", type=int, default=64, help="images per request")
    parser.add_argument("--api-key", default=None, help=f"required X-API-Key header (default: ${API_KEY_ENV})")
    parser.add_argument("--no-auth", action="store_true", help="serve without an API key (explicit choice)")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="seconds to send a request head")
    parser.add_argument("--body-timeout", type=float, default=30.0, help="seconds to send a request body (else 408)")
    parser.add_argument("--timeout-keep-alive", type=int, default=5, help="seconds an idle keep-alive connection lives")
    parser.add_argument(
        "--limit-concurrency", type=int, default=256, help="connections or requests at once before new requests get 503"
    )
    parser.add_argument(
        "--h11-max-incomplete-event-size",
        type=int,
        default=16 * 1024,
        help="largest request head in bytes (h11's limit)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="uvicorn's and the gate's log level",
    )


def resolve_api_key(given: str | None, environ: dict[str, str], no_auth: bool) -> str | None:
    """The key to require: ``given``, else ``$ODIN_OOD_API_KEY``; None only with ``no_auth``."""
    key, origin = (given, "--api-key") if given is not None else (environ.get(API_KEY_ENV), f"${API_KEY_ENV}")
    if no_auth:
        if key is not None:
            raise ValueError(f"--no-auth, but {origin} gives a key: choose one")
        return None
    if key is None:
        raise ValueError(f"no API key: set {API_KEY_ENV} (or --api-key), or pass --no-auth to serve without one")
    if not key:
        raise ValueError(f"{origin} is set but empty (a missing secret?): give a key, or pass --no-auth")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{origin} is not valid UTF-8") from None
    if key != key.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise ValueError(f"{origin} has surrounding spaces or control characters, which HTTP headers cannot carry")
    return key


def run(args: argparse.Namespace) -> int:
    extras.require("serve", "the HTTP gate")  # before any work (python-multipart would fail only at the first upload)
    import uvicorn

    from odin_ood.serving.app import Limits, create_app
    from odin_ood.serving.protocol import TimedH11Protocol

    check_flags(args)
    key = resolve_api_key(args.api_key, dict(os.environ), args.no_auth)
    limits = Limits(args.max_body_bytes, args.max_images, args.max_json_bytes, args.body_timeout)
    detector, spec = load_detector(ModelOptions.from_args(args), args.detector, file_batch=False)
    budget = runtime_budget(args.runtime, args.max_memory)  # a graph runtime takes more per image than eager
    max_batch = args.max_batch or min(SERVE_BATCH, memory.batch_for(detector.model, spec.input_shape, budget))
    app = create_app(
        detector,
        spec,
        limits,
        api_key=key,
        max_batch=max_batch,
        max_wait_ms=args.max_wait_ms,
        pad=not args.no_padding,
        model_name=str(args.model),
        runtime=args.runtime,
        threads=args.threads,
    )
    _log_to_stderr(args.log_level)
    print(
        f"odin-ood serve: {args.model} on http://{args.host}:{args.port} "
        f"(API key {'required' if key else 'off (--no-auth)'})",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        # uvicorn calls http= with the protocol's arguments: a partial works (its hint names a class)
        http=functools.partial(TimedH11Protocol, header_timeout=args.header_timeout),  # type: ignore[arg-type]
        timeout_keep_alive=args.timeout_keep_alive,
        limit_concurrency=args.limit_concurrency,
        h11_max_incomplete_event_size=args.h11_max_incomplete_event_size,
    )
    return 0


def check_flags(args: argparse.Namespace) -> None:
    """Refuse, in one line, a serve flag outside the range where the server can run: counts >= 1,
    a port in [0, 65535], a batch in [1, MAX_BATCH_SIZE], finite times (an infinite
    ``--max-wait-ms`` would hold every request, and the shutdown, forever)."""
    for name in ("max_images", "limit_concurrency", "timeout_keep_alive", "h11_max_incomplete_event_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {short(getattr(args, name))}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must lie in [0, 65535], got {short(args.port)}")
    if args.max_batch is not None:
        check_batch_size(args.max_batch, "--max-batch")
    if not (math.isfinite(args.max_wait_ms) and args.max_wait_ms >= 0):
        raise ValueError(f"--max-wait-ms must be a finite number >= 0, got {args.max_wait_ms}")
    for name in ("header_timeout", "body_timeout"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) > 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number > 0, got {getattr(args, name)}")


def _log_to_stderr(level: str) -> None:
    """The app's own log lines (``odin_ood.serve``) go to stderr beside uvicorn's."""
    log = logging.getLogger("odin_ood.serve")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if level == "trace" else level.upper())
    log.propagate = False
