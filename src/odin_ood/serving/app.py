"""The HTTP out-of-distribution gate: a FastAPI app around a fitted detector.

* ``POST /v1/predict``: one or more images as ``multipart/form-data`` files (PNG, JPEG, ...) or
  JSON ``{"images": [{"base64": "<encoded image>"} | {"array": <(C, H, W) floats in [0, 1]>}]}``;
  answers ``{"predictions": [{predicted_class, class_name, confidence, score, threshold,
  is_out_of_distribution, error, precision}, ...]}`` in request order (``class_name``: None unless the model has
  ``class_names``, see :mod:`odin_ood.models.classes`).
* ``GET /v1/detector``: the fitted parameters and the model's fingerprint. ``GET /healthz``.
* The OpenAPI schema is at ``/openapi.json`` (``X-API-Key`` declared in it). There is no
  ``/docs`` page: FastAPI's loads its scripts from a CDN, which fails offline and tells a third
  party who opens it; any OpenAPI viewer can read the schema.

Limits are enforced before decoding: the declared Content-Length and then the bytes actually
received (413; JSON bodies have their own, smaller limit, since parsed JSON costs several times
its size in Python objects), the time taken to send the body (408), the number of images (413),
each image's width and height read from its header (413, or 422 for a size the model does not
take when resizing is off). Undecodable images, wrong shapes, NaNs, JSON nested too deeply
answer 4xx, a wrong content type 415, a missing or wrong ``X-API-Key`` (when a key is set)
401; every error is JSON ``{"error": {"status", "message"}}`` naming the problem, and the
server keeps serving. A client that goes away mid-request costs one info line in the log.

The decision fails closed: a prediction whose score is not finite is out-of-distribution, with
``score: null`` and the reason in its ``error`` (null otherwise). Requests carry images, never
paths, and nothing received is unpickled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from torch import Tensor

from odin_ood._version import __version__
from odin_ood.detector import Detector
from odin_ood.models.classes import class_name, class_names
from odin_ood.preprocess import InputError, Preprocessing, array_pixels, decode, image_pixels
from odin_ood.runtimes import load_runtime
from odin_ood.runtimes.batches import fixed_batch_outputs
from odin_ood.serving.batcher import MicroBatcher

log = logging.getLogger("odin_ood.serve")


NOT_FINITE = "the ODIN score is not finite (NaN or infinite): out-of-distribution (the gate fails closed)"


@dataclass(frozen=True)
class Limits:
    """Per-request limits: body bytes (multipart), JSON body bytes, images, seconds to send the body."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_images: int = 64
    max_json_bytes: int = 4 * 1024 * 1024
    body_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}")


class Prediction(BaseModel):
    predicted_class: int
    class_name: str | None = None
    confidence: float | None
    score: float | None
    threshold: float
    is_out_of_distribution: bool
    error: str | None = None
    precision: str = "fp32"


class PredictResponse(BaseModel):
    predictions: list[Prediction]


_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["images"],
                "properties": {
                    "images": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "base64": {"type": "string", "description": "an encoded image (PNG, JPEG, ...)"},
                                "array": {
                                    "type": "array",
                                    "description": "floats in [0, 1] of the model's input shape (C, H, W)",
                                },
                            },
                        },
                    }
                },
            }
        },
    },
}


def create_app(
    detector: Detector,
    spec: Preprocessing,
    limits: Limits = Limits(),
    api_key: str | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 5.0,
    pad: bool = True,
    model_name: str = "",
    runtime: str = "torch",
    threads: int | None = None,
) -> FastAPI:
    """The gate for ``detector`` on the scoring runtime called ``runtime`` (:mod:`odin_ood.runtimes`);
    ``max_batch`` also becomes ``detector.batch_size`` (the fixed batch size that ``pad`` fills on
    an exact runtime, ``torch``, so scores equal the library's in batches of that size; a graph
    runtime, within SCORE_TOLERANCE of them at any batch size, runs micro-batches at their natural
    size unless its graph has a fixed batch size).
    ``api_key`` (compared with the header's raw bytes as UTF-8) None turns authentication off."""
    if api_key is not None and not api_key:
        raise ValueError("the API key is empty: give a non-empty key, or None for no authentication")
    key = None if api_key is None else api_key.encode("utf-8")
    detector.batch_size = max_batch
    scorer = load_runtime(runtime, detector, spec, threads=threads)
    pad = pad and scorer.exact
    batcher = MicroBatcher(partial(fixed_batch_outputs, scorer, pad=pad), max_batch, max_wait_ms)
    threshold = detector.threshold_
    names = class_names(detector.model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="odin-ood gate",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="ODIN out-of-distribution detection in front of a classifier.",
    )
    app.state.batcher = batcher
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the key the server was started with")

    def check_key(request: Request, _: str | None = Depends(header)) -> None:
        if key is None:
            return
        given = next((v for k, v in request.scope["headers"] if k == b"x-api-key"), b"")
        if not hmac.compare_digest(given, key):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "batches": batcher.batches, "images": batcher.images}

    @app.get("/v1/detector", dependencies=[Depends(check_key)])
    async def describe() -> dict[str, Any]:
        return {
            **detector.to_dict(),
            "model": model_name,
            "input_shape": list(spec.input_shape),
            "resize": spec.resize,
            "max_batch": max_batch,
            "runtime": runtime,
            "padding": pad or scorer.fixed_batch,
            "max_wait_ms": max_wait_ms,
            "limits": vars(limits),
        }

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        dependencies=[Depends(check_key)],
        openapi_extra={"requestBody": _REQUEST_BODY},
    )
    async def predict(request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "")
        media = media_type(ctype)
        if media == "multipart/form-data":
            body = await _read_limited(request, limits.max_body_bytes, limits.body_timeout)
            blobs = await _multipart(request, body, limits.max_images)
            x = await run_in_threadpool(_decode_all, blobs, spec)
        elif media == "application/json":
            body = await _read_limited(request, limits.max_json_bytes, limits.body_timeout)
            x = await run_in_threadpool(_json_images, body, spec, limits.max_images)
        else:
            raise InputError(
                f"content type {ctype[:80] or 'none'!r} is not supported: send multipart/form-data or application/json",
                415,
            )
        out = await batcher.submit(x)
        cols = {k: v.tolist() for k, v in out.items()}
        return {
            "predictions": [
                _prediction({k: c[i] for k, c in cols.items()}, threshold, names, detector.precision)
                for i in range(len(x))
            ]
        }

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)

    app.add_exception_handler(InputError, lambda r, e: error(e.status, str(e)))
    app.add_exception_handler(HTTPException, lambda r, e: error(e.status_code, str(e.detail)))
    app.add_exception_handler(RequestValidationError, lambda r, e: error(422, str(e.errors())))

    async def gone(request: Request, exc: Exception) -> JSONResponse:
        log.info("client %s went away before sending the whole request to %s", _client(request), request.url.path)
        return error(400, "client disconnected")

    app.add_exception_handler(ClientDisconnect, gone)

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return error(500, f"internal error: {type(exc).__name__}")

    app.add_exception_handler(Exception, internal)
    return app


def media_type(content_type: str) -> str:
    """The ``type/subtype`` of a Content-Type header, lower-cased (media types are
    case-insensitive, RFC 9110 section 8.3.1), without its parameters (``; boundary=...``,
    ``; charset=...``); compared whole, never as a prefix."""
    return content_type.split(";", 1)[0].strip(" \t").lower()


def _prediction(
    row: dict[str, Any], threshold: float, names: Sequence[str] | None = None, precision: str = "fp32"
) -> dict[str, Any]:
    """One image's answer (at ``precision``, :mod:`odin_ood.scores.precision`); a score that is not
    finite is reported out-of-distribution, with the reason."""
    finite = math.isfinite(row["score"])
    return {
        "predicted_class": row["predicted_class"],
        "class_name": class_name(names, row["predicted_class"]),
        "confidence": row["confidence"] if math.isfinite(row["confidence"]) else None,
        "score": row["score"] if finite else None,
        "threshold": threshold,
        "is_out_of_distribution": row["is_out_of_distribution"] or not finite,
        "error": None if finite else NOT_FINITE,
        "precision": precision,
    }


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


async def _read_limited(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused (413) when its declared or actual size exceeds ``limit`` bytes, and
    (408) when it takes longer than ``timeout`` seconds to arrive."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit() or len(declared) > 18:
            raise InputError(f"Content-Length {declared[:20]!r} is not a number of bytes", 400)
        if int(declared) > limit:
            raise InputError(
                f"request body of {declared} bytes exceeds the limit of {limit} bytes for "
                f"{request.headers.get('content-type', 'this content type')}",
                413,
            )
    try:
        return await asyncio.wait_for(_body(request, limit), timeout)
    except asyncio.TimeoutError:
        raise InputError(f"request body not received within {timeout:g} s", 408) from None


async def _body(request: Request, limit: int) -> bytes:
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputError(f"request body exceeds the limit of {limit} bytes", 413)
        parts.append(chunk)
    return b"".join(parts)


async def _multipart(request: Request, body: bytes, max_images: int) -> list[tuple[str, bytes]]:
    async def once() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        request.headers, once(), max_files=max_images, max_fields=max_images, max_part_size=len(body) + 1
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        status = 413 if "Too many" in exc.message else 400
        raise InputError(f"multipart body: {exc.message} (at most {max_images} images per request)", status) from None
    uploads = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
    files = [(f"image {i} ({v.filename or k})", await v.read()) for i, (k, v) in enumerate(uploads)]
    await form.close()
    if not files:
        raise InputError("multipart body holds no image files", 422)
    return files


def _decode_all(blobs: list[tuple[str, bytes]], spec: Preprocessing) -> Tensor:
    import torch

    return torch.stack([image_pixels(decode(b, spec, label), spec, label) for label, b in blobs])


def _numbers_only(values: Any, label: str) -> Any:
    """``values`` if it is nested JSON lists of numbers (floats: integers parse as floats here);
    a string such as "0.5", a bool, null or an object anywhere is refused (422), not converted."""
    stack = [values]
    while stack:
        v = stack.pop()
        if not isinstance(v, list):
            v = [v]
        kinds = set(map(type, v))  # one C-speed pass per innermost row of numbers
        if kinds <= {float}:
            continue
        if kinds - {float, list}:
            name = {str: "a string", bool: "true or false", type(None): "null", dict: "an object"}
            raise InputError(
                f"{label}: array values must be JSON numbers, got {name[min(kinds - {float, list}, key=str)]}"
            )
        stack.extend(a for a in v if isinstance(a, list))
    return values


def _json_images(body: bytes, spec: Preprocessing, max_images: int) -> Tensor:
    import torch

    try:  # integers parse as floats: no 5,000-digit int conversions, and 10**400 becomes inf (refused below)
        doc = json.loads(body, parse_int=float)
    except RecursionError:
        raise InputError("body is JSON nested too deeply", 400) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InputError(f"body is not valid JSON ({exc})", 400) from None
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list) or not images:
        raise InputError('JSON body must be {"images": [...]} with at least one image', 422)
    if len(images) > max_images:
        raise InputError(f"{len(images)} images in one request; the limit is {max_images}", 413)
    tensors = []
    for i, item in enumerate(images):
        label = f"image {i}"
        if isinstance(item, dict) and isinstance(item.get("base64"), str):
            try:
                blob = base64.b64decode(item["base64"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InputError(f"{label}: invalid base64 ({exc})") from None
            tensors.append(image_pixels(decode(blob, spec, label), spec, label))
        elif isinstance(item, dict) and "array" in item:
            tensors.append(array_pixels(_numbers_only(item["array"], label), spec, label))
        else:
            raise InputError(f'{label}: expected {{"base64": "..."}} or {{"array": [...]}}')
    return torch.stack(tensors)
