"""The HTTP gate, end to end: a real uvicorn process on loopback, real HTTP requests, real MNIST
and notMNIST images, the shipped MNIST MLP; answers compared with the library's."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch

from serving_support import (
    decoded,
    encode,
    encode16,
    fit_mnist_detector,
    library_outputs,
    png_header,
    server_log,
    start_server,
    stop_server,
)

KEY = "s3cret-clé-🔑"  # keys are UTF-8; HTTP carries the header as raw bytes
MAX_BATCH = 16


@pytest.fixture(scope="module")
def gate(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate")
    det, mnist, notmnist = fit_mnist_detector(shared_data, folder / "det", batch_size=MAX_BATCH)
    proc, url = start_server(
        [
            "--detector",
            str(folder / "det"),
            "--model",
            "mnist-mlp",
            "--max-batch",
            str(MAX_BATCH),
            "--max-wait-ms",
            "5",
            "--max-images",
            "8",
            "--max-body-bytes",
            "400000",
            "--max-json-bytes",
            "250000",
            "--max-side",
            "256",
        ],
        extra_env={"ODIN_OOD_API_KEY": KEY},
    )
    client = httpx.Client(base_url=url, headers={"X-API-Key": KEY.encode()}, timeout=30.0)
    # 64 real images: MNIST digits 1000.. (unseen by the fit) and notMNIST letters 500..
    images = np.concatenate([mnist.images[1000:1032, 0].numpy(), notmnist.images[500:532, 0].numpy()])
    yield {"det": det, "url": url, "client": client, "images": images, "proc": proc}
    client.close()
    stop_server(proc)


def expected(det, blobs: list[bytes]) -> list[dict]:
    out = library_outputs(det, torch.stack([decoded(b) for b in blobs]))
    return [
        {
            "predicted_class": out["predicted_class"][i],
            "class_name": None,
            "confidence": out["confidence"][i],
            "score": out["score"][i],
            "threshold": det.threshold_,
            "is_out_of_distribution": out["is_out_of_distribution"][i],
            "error": None,
            "precision": "fp32",
        }
        for i in range(len(blobs))
    ]


def test_multipart_png_and_jpeg_match_the_library(gate):
    blobs = [encode(gate["images"][0]), encode(gate["images"][40], "JPEG"), encode(gate["images"][5])]
    r = gate["client"].post("/v1/predict", files=[("images", (f"{i}.img", b)) for i, b in enumerate(blobs)])
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == expected(gate["det"], blobs)


def test_json_base64_and_float_array_match_the_library(gate):
    digit = gate["images"][3]
    blob = encode(gate["images"][50])
    array = (digit.astype(np.float32) / 255.0)[None].tolist()
    r = gate["client"].post(
        "/v1/predict", json={"images": [{"base64": base64.b64encode(blob).decode()}, {"array": array}]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == expected(gate["det"], [blob, encode(digit)])


def test_detector_endpoint_reports_the_fitted_parameters(gate):
    d = gate["client"].get("/v1/detector").json()
    det = gate["det"]
    assert (d["temperature"], d["epsilon"], d["threshold"]) == (det.temperature_, det.epsilon_, det.threshold_)
    assert d["model_fingerprint"] == det.model_fingerprint_ and d["input_shape"] == [1, 28, 28]
    schema = gate["client"].get("/openapi.json").json()
    assert {"/v1/predict", "/v1/detector", "/healthz"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert schema["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "the key the server was started with",
    }
    assert {"APIKeyHeader": []} in schema["paths"]["/v1/predict"]["post"]["security"]
    for page in ("/docs", "/redoc"):  # FastAPI's pages load their scripts from a CDN: not served
        assert gate["client"].get(page).status_code == 404


def test_utf8_key_is_compared_as_bytes_and_a_wrong_one_refused(gate):
    body = {"images": [{"array": np.zeros((1, 28, 28)).tolist()}]}
    assert gate["client"].post("/v1/predict", json=body).status_code == 200
    for wrong in ("s3cret-clé-".encode(), KEY.encode()[:-1], "s3cret-clé-".encode("latin-1") + "🔑".encode(), b""):
        r = httpx.post(gate["url"] + "/v1/predict", json=body, headers={"X-API-Key": wrong})
        assert r.status_code == 401, wrong


def _nan_array():
    a = np.full((1, 28, 28), 0.5).tolist()
    a[0][3][4] = float("nan")
    return json.dumps({"images": [{"array": a}]}, allow_nan=True).encode()


def _json_array_with(number: bytes) -> bytes:
    """A (1, 28, 28) array of zeros as JSON text, its first value replaced by ``number``."""
    zeros = json.dumps({"images": [{"array": [[[0] * 28] * 28]}]}).encode()
    return zeros.replace(b"[[[0", b"[[[" + number, 1)


_NOISE_PNG = encode(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))
BAD_REQUESTS = [
    ("no key", dict(json={"images": []}, headers={"X-API-Key": "wrong"}), 401, "X-API-Key"),
    ("not an image", dict(files=[("images", ("x.png", b"not a png at all"))]), 422, "format PIL can decode"),
    ("truncated png", dict(files=[("images", ("x.png", _NOISE_PNG[: len(_NOISE_PNG) // 2]))]), 422, "image 0"),
    ("wrong size", dict(files=[("images", ("x.png", encode(np.zeros((20, 28), np.uint8))))]), 422, "28x20"),
    ("too large", dict(files=[("images", ("x.png", encode(np.zeros((300, 28), np.uint8))))]), 413, "256 pixels"),
    (
        "too many",
        dict(files=[("images", (f"{i}.png", encode(np.zeros((28, 28), np.uint8)))) for i in range(9)]),
        413,
        "at most 8",
    ),
    (
        "body too big",
        dict(content=b"{" + b" " * 500000 + b"}", headers={"content-type": "application/json"}),
        413,
        "exceeds the limit",
    ),
    (
        "json over its own limit",
        dict(content=b"{" + b" " * 300000 + b"}", headers={"content-type": "application/json"}),
        413,
        "250000 bytes",
    ),
    (
        "json nested 100,000 deep",
        dict(
            content=b'{"images": ' + b"[" * 100000 + b"]" * 100000 + b"}", headers={"content-type": "application/json"}
        ),
        400,
        "nested too deeply",
    ),
    (
        "10**400",
        dict(content=_json_array_with(b"1" + b"0" * 400), headers={"content-type": "application/json"}),
        422,
        "infinite",
    ),
    (
        "5,001-digit integer",
        dict(content=_json_array_with(b"9" * 5001), headers={"content-type": "application/json"}),
        422,
        "infinite",
    ),
    ("pixel bomb over PIL's limit", dict(files=[("images", ("bomb.png", png_header(20000, 20000)))]), 413, "pixels"),
    (
        "wrong size from the header",
        dict(files=[("images", ("x.png", png_header(200, 200)))]),
        422,
        "200x200 but the model takes 28x28",
    ),
    ("nan", dict(content=_nan_array(), headers={"content-type": "application/json"}), 422, "NaN"),
    ("wrong shape", dict(json={"images": [{"array": np.zeros((28, 28)).tolist()}]}), 422, "shape [28, 28]"),
    ("ragged", dict(json={"images": [{"array": [[0.1, 0.2], [0.3]]}]}), 422, "rectangular"),
    ("out of range", dict(json={"images": [{"array": np.full((1, 28, 28), 2.0).tolist()}]}), 422, "[0, 1]"),
    ("bad base64", dict(json={"images": [{"base64": "!!!"}]}), 422, "base64"),
    ("bad json", dict(content=b"{nope", headers={"content-type": "application/json"}), 400, "not valid JSON"),
    ("no images", dict(json={"pictures": []}), 422, '{"images"'),
    ("text body", dict(content=b"hello", headers={"content-type": "text/plain"}), 415, "not supported"),
]


@pytest.mark.parametrize("case,kwargs,status,message", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_malformed_requests_get_a_json_4xx_naming_the_problem(gate, case, kwargs, status, message):
    r = gate["client"].post("/v1/predict", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]
    assert gate["client"].get("/healthz").json()["status"] == "ok"  # still serving


def test_sixteen_bit_png_scores_exactly_as_its_eight_bit_copy(gate):
    digit, letter = gate["images"][7], gate["images"][45]
    r8 = gate["client"].post(
        "/v1/predict", files=[("images", ("a.png", encode(digit))), ("images", ("b.png", encode(letter)))]
    )
    r16 = gate["client"].post(
        "/v1/predict", files=[("images", ("a.png", encode16(digit))), ("images", ("b.png", encode16(letter)))]
    )
    assert r8.status_code == r16.status_code == 200, r16.text
    assert r16.json() == r8.json()
    assert [p["is_out_of_distribution"] for p in r16.json()["predictions"]] == [False, True]


def test_no_traceback_in_the_server_log(gate):
    # runs after the malformed requests above: each was a 4xx, none an internal error
    log = server_log(gate["proc"])
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


def test_huge_declared_image_is_refused_from_its_header(gate):
    # 5000x5000 zeros compress to a few kB: the body is small, the decoded image would be 25 MB
    blob = encode(np.zeros((5000, 5000), np.uint8))
    assert len(blob) < 200000
    r = gate["client"].post("/v1/predict", files=[("images", ("big.png", blob))])
    assert r.status_code == 413 and "5000x5000" in r.json()["error"]["message"]


def test_concurrent_load_1000_requests_16_clients_no_5xx_and_library_scores(gate):
    images = gate["images"]
    blobs = [encode(im) for im in images]
    want = expected(gate["det"], blobs)
    before = gate["client"].get("/healthz").json()

    def worker(k: int) -> list[tuple[int, int, list]]:
        got = []
        with httpx.Client(base_url=gate["url"], headers={"X-API-Key": KEY.encode()}, timeout=30.0) as c:
            for j in range(k, 1000, 16):
                i = j % len(blobs)
                r = c.post("/v1/predict", files=[("images", (f"{i}.png", blobs[i]))])
                got.append((i, r.status_code, r.json().get("predictions")))
        return got

    with ThreadPoolExecutor(16) as pool:
        results = [g for part in pool.map(worker, range(16)) for g in part]
    assert len(results) == 1000
    assert [s for _, s, _ in results if s >= 500] == [] and {s for _, s, _ in results} == {200}
    mismatched = [i for i, _, p in results if p != [want[i]]]
    assert mismatched == []
    after = gate["client"].get("/healthz").json()
    images_scored, batches = after["images"] - before["images"], after["batches"] - before["batches"]
    assert images_scored == 1000 and batches < 1000  # concurrent requests shared passes
