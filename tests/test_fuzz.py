"""Bounded-time fuzzing (Hypothesis) of the two doors untrusted bytes come through: ``POST
/v1/predict`` on a real uvicorn process on loopback (random bytes, random PNG headers, random
JSON) and ``Detector.load`` (random detector files). Whatever arrives: never a 5xx, never a
traceback in the server's log, never a non-finite score reported in-distribution; a detector
file either loads with every field in range or raises ``ValueError``."""

from __future__ import annotations

import base64
import json
import math
import zlib

import httpx
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from odin_ood import Detector, models
from odin_ood._utils.checks import EPSILON_RANGE, TEMPERATURE_RANGE
from odin_ood.detector import MAX_BATCH_SIZE
from serving_support import png_header, server_log, start_server, stop_server

KEY = "fuzz-key"
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=40,
)
png_blobs = st.builds(
    png_header,
    width=st.integers(0, 400) | st.sampled_from([28, 2**31 - 1, 2**32 - 1, 20000]),
    height=st.integers(0, 400) | st.sampled_from([28, 2**31 - 1, 2**32 - 1, 20000]),
    bit_depth=st.sampled_from([1, 2, 4, 8, 16]) | st.integers(0, 255),
    color_type=st.sampled_from([0, 2, 3, 4, 6]) | st.integers(0, 255),
    pixels=st.none() | st.binary(max_size=600) | st.binary(max_size=3000).map(zlib.compress),
)
near_images = st.lists(
    st.lists(
        st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-2, 2), min_size=27, max_size=29),
        min_size=27,
        max_size=29,
    ),
    min_size=1,
    max_size=2,
)
image_items = st.one_of(
    st.fixed_dictionaries(
        {"base64": (png_blobs | st.binary(max_size=300)).map(lambda b: base64.b64encode(b).decode())}
    ),
    st.fixed_dictionaries({"base64": st.text(max_size=40)}),
    st.fixed_dictionaries({"array": json_values | near_images}),
    json_values,
)
json_bodies = st.one_of(
    st.fixed_dictionaries({"images": st.lists(image_items, max_size=5)}),
    json_values,
).map(lambda doc: json.dumps(doc, allow_nan=True).encode())


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    det = Detector(models.load("mnist-mlp"))
    det._set_fitted(1000.0, 0.0014, 0.1, 0.95)
    det.save(folder / "det")
    proc, url = start_server(
        [
            "--detector",
            str(folder / "det"),
            "--model",
            "mnist-mlp",
            "--max-batch",
            "8",
            "--max-images",
            "4",
            "--max-body-bytes",
            "200000",
            "--max-json-bytes",
            "100000",
            "--max-side",
            "256",
        ],
        extra_env={"ODIN_OOD_API_KEY": KEY},
        log_level="info",
    )
    client = httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30.0)
    yield {"proc": proc, "client": client}
    client.close()
    stop_server(proc)


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    body = r.json()
    if r.status_code != 200:
        assert body["error"]["status"] == r.status_code and body["error"]["message"]
        return
    for p in body["predictions"]:
        score = p["score"]
        if score is None or not math.isfinite(score):
            assert p["is_out_of_distribution"] is True and p["error"]
        else:
            assert p["is_out_of_distribution"] == (score <= p["threshold"])


@FUZZ
@given(blobs=st.lists(st.binary(max_size=2000) | png_blobs, min_size=1, max_size=5))
def test_predict_survives_random_files_and_png_headers(gate, blobs):
    check(gate["client"].post("/v1/predict", files=[("images", (f"{i}.png", b)) for i, b in enumerate(blobs)]))


@FUZZ
@given(body=json_bodies)
def test_predict_survives_random_json(gate, body):
    check(gate["client"].post("/v1/predict", content=body, headers={"content-type": "application/json"}))


@FUZZ
@given(
    body=st.binary(max_size=3000),
    ctype=st.sampled_from(
        ["application/json", "multipart/form-data; boundary=x", "multipart/form-data", "image/png", ""]
    ),
)
def test_predict_survives_random_bytes_under_any_content_type(gate, body, ctype):
    check(gate["client"].post("/v1/predict", content=body, headers={"content-type": ctype}))


def test_zz_server_log_has_no_traceback(gate):  # named to run after the fuzzing above
    log = server_log(gate["proc"])
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


@pytest.fixture(scope="module")
def mlp():
    torch.set_num_threads(1)
    model = models.load("mnist-mlp")
    det = Detector(model)
    det._set_fitted(1000.0, 0.0014, 0.1, 0.95)
    return model, det.to_dict()


FIELDS = [
    "format",
    "format_version",
    "temperature",
    "epsilon",
    "threshold",
    "tpr",
    "objective",
    "input_std",
    "input_mean",
    "clamp",
    "batch_size",
    "model_fingerprint",
    "input_shape",
    "preprocessing",
]
PREPROCESSING_FIELDS = ["input_shape", "mode", "resize", "resize_size", "interpolation", "mean", "std"]


def load_or_refuse(model, path) -> None:
    try:
        det = Detector.load(path, model)
    except ValueError as exc:
        assert str(path) in str(exc)
        return
    low, high = TEMPERATURE_RANGE
    assert low <= det.temperature_ <= high and EPSILON_RANGE[0] <= det.epsilon_ <= EPSILON_RANGE[1]
    assert 0.0 <= det.threshold_ <= 1.0 and 0.0 < det.tpr_ < 1.0 and 1 <= det.batch_size <= MAX_BATCH_SIZE
    out = det.outputs(torch.rand(3, 1, 28, 28))
    assert bool((out["is_out_of_distribution"] | torch.isfinite(out["score"])).all())


@FUZZ
@given(
    edits=st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1, max_size=4),
    drop=st.lists(st.sampled_from(FIELDS), max_size=2),
)
def test_detector_load_survives_random_fields(mlp, tmp_path_factory, edits, drop):
    model, valid = mlp
    d = {k: v for k, v in {**valid, **edits}.items() if k not in drop}
    try:
        text = json.dumps(d, allow_nan=True)
    except ValueError:  # an int too long for Python to write
        assume(False)
    path = tmp_path_factory.mktemp("det") / "detector.json"
    path.write_text(text)
    load_or_refuse(model, path)


@FUZZ
@given(blob=st.binary(max_size=2000) | json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()))
def test_detector_load_survives_random_files(mlp, tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("det") / "detector.json"
    path.write_bytes(blob)
    load_or_refuse(mlp[0], path)


@FUZZ
@given(
    edits=st.dictionaries(
        st.sampled_from(PREPROCESSING_FIELDS),
        json_values | st.lists(st.sampled_from([10**400, -(2**1024), 2**63]) | st.floats(), min_size=1, max_size=4),
        min_size=1,
        max_size=3,
    )
)
def test_detector_load_survives_random_preprocessing_fields(mlp, tmp_path_factory, edits):
    model, valid = mlp
    d = {**valid, "preprocessing": {**valid["preprocessing"], **edits}}
    path = tmp_path_factory.mktemp("det") / "detector.json"
    path.write_text(json.dumps(d, allow_nan=True))
    load_or_refuse(model, path)
