"""What reaches the HTTP gate, on a real uvicorn process on loopback with a resizing preprocessing: media
types are parsed (case-insensitive, parameters allowed, never a prefix match), JSON pixels are
JSON numbers only, an image far smaller than the model's input is refused rather than upscaled,
and a request head over the limit gets 400 however it arrives (raw sockets, one write each)."""

from __future__ import annotations

import json
import socket

import httpx
import numpy as np
import pytest
import torch

from odin_ood import Detector, models, odin_scores
from odin_ood.cli import build_parser
from odin_ood.commands.options import ModelOptions
from odin_ood.preprocess import InputError, Preprocessing, image_tensor
from odin_ood.serving.app import media_type
from serving_support import encode, server_log, start_server, stop_server

HEAD_LIMIT = 16 * 1024  # the default --h11-max-incomplete-event-size


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate")
    lenet = models.load("mnist-lenet")
    squash = Preprocessing((1, 28, 28), resize="squash", mean=lenet.input_mean, std=lenet.input_std)
    det = Detector(lenet, preprocessing=squash)
    det._set_fitted(1000.0, 0.0, 0.101, 0.95)
    det.save(folder / "det")
    proc, url = start_server(
        ["--detector", str(folder / "det"), "--model", "mnist-lenet", "--no-auth", "--max-batch", "4"], log_level="info"
    )
    client = httpx.Client(base_url=url, timeout=30.0)
    yield {"proc": proc, "client": client, "port": int(url.rsplit(":", 1)[1])}
    client.close()
    stop_server(proc)


ZEROS = json.dumps({"images": [{"array": [[[0] * 28] * 28]}]}).encode()


@pytest.mark.parametrize(
    "ctype,status",
    [
        ("application/json", 200),
        ("APPLICATION/JSON", 200),
        ("Application/Json ; charset=UTF-8", 200),
        ("application/json;charset=utf-8", 200),
        ("application/jsonfoo", 415),
        ("application/json-seq", 415),
        ("text/application/json", 415),
        ("", 415),
        ("multipart/form-data-x; boundary=b", 415),
    ],
)
def test_media_types_are_parsed_not_prefix_matched(gate, ctype, status):
    r = gate["client"].post("/v1/predict", content=ZEROS, headers={"content-type": ctype})
    assert r.status_code == status, r.text


def test_multipart_media_type_is_case_insensitive(gate):
    request = gate["client"].build_request(
        "POST", "/v1/predict", files=[("images", ("a.png", encode(np.zeros((28, 28), np.uint8))))]
    )
    ctype = request.headers["content-type"]
    request.headers["content-type"] = ctype.replace("multipart/form-data", "MULTIPART/Form-Data")
    assert gate["client"].send(request).status_code == 200
    assert media_type(' multipart/form-data ; boundary="x;y"') == "multipart/form-data"


@pytest.mark.parametrize(
    "value,kind",
    [
        ('"0.5"', "a string"),
        ("true", "true or false"),
        ("false", "true or false"),
        ("null", "null"),
        ('{"v": 0.5}', "an object"),
    ],
)
def test_json_pixels_must_be_json_numbers(gate, value, kind):
    body = ZEROS.replace(b"[[[0", b"[[[" + value.encode(), 1)
    r = gate["client"].post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and f"must be JSON numbers, got {kind}" in r.json()["error"]["message"], r.text
    ints = ZEROS.replace(b"[[[0", b"[[[1", 1)  # integers are numbers
    assert (
        gate["client"].post("/v1/predict", content=ints, headers={"content-type": "application/json"}).status_code
        == 200
    )


@pytest.mark.parametrize(
    "size,status", [((1, 1), 422), ((13, 28), 422), ((28, 5), 422), ((14, 14), 200), ((56, 40), 200)]
)
def test_with_resize_an_image_far_smaller_than_the_input_is_refused(gate, size, status):
    png = encode(np.full(size[::-1], 128, np.uint8))
    r = gate["client"].post("/v1/predict", files=[("images", ("grey.png", png))])
    assert r.status_code == status, r.text
    if status == 422:
        assert "too small to resize to the model's 28x28 (at least 14x14" in r.json()["error"]["message"]


def test_min_side_is_a_flag_and_a_spec_field():
    args = build_parser().parse_args(
        ["score", "--model", "mnist-lenet", "--detector", "d", "--min-side", "1", "--output", "o.csv", "x"]
    )
    assert ModelOptions.from_args(args).min_side == 1
    tiny = np.full((1, 1), 200, np.uint8)
    for resize in ("squash", "resize-shorter-then-center-crop"):
        with pytest.raises(InputError, match="too small"):
            image_tensor(tiny, Preprocessing((1, 28, 28), resize=resize))
        assert image_tensor(tiny, Preprocessing((1, 28, 28), resize=resize, min_side=1)).shape == (1, 28, 28)
        with pytest.raises(InputError, match=r"at least 3x3"):
            image_tensor(np.zeros((2, 30), np.uint8), Preprocessing((1, 28, 28), resize=resize, min_side=3))


def test_a_normalised_image_within_0_1_is_not_normalised_twice(gate):
    """Greys in [0.15, 0.4] become (p - 0.1307) / 0.3081 in [0.06, 0.87] after preprocessing:
    inside [0, 1], where the library's normalise="auto" would take them for pixels; the gate
    scores them as they are."""
    grey = np.random.default_rng(0).uniform(0.15, 0.4, (1, 28, 28)).astype(np.float32)
    r = gate["client"].post("/v1/predict", json={"images": [{"array": grey.tolist()}]})
    lenet = models.load("mnist-lenet")
    x = torch.from_numpy(grey)[None]
    want, twice = (odin_scores(lenet, x, 1000.0, 0.0), odin_scores(lenet, (x - 0.1307) / 0.3081, 1000.0, 0.0))
    assert float(want[0]) != pytest.approx(float(twice[0]), rel=1e-5)  # the test can tell them apart
    assert r.json()["predictions"][0]["score"] == pytest.approx(float(want[0]), rel=1e-6)


def raw_head_answer(port: int, padding: int) -> bytes:
    """Send one GET whose head carries ``padding`` bytes of header value, in one write; the answer's
    status line and body (bounded: the socket times out after 10 s)."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * padding + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith((b"}", b"event-size)")):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.parametrize("padding", [17_000, 100_000, 200_000, 1_000_000])
def test_a_request_head_over_the_limit_gets_400_however_large_it_arrives(gate, padding):
    answer = raw_head_answer(gate["port"], padding)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert f"exceeds the limit of {HEAD_LIMIT} bytes".encode() in answer
    assert gate["client"].get("/healthz").status_code == 200


def test_a_head_within_the_limit_is_answered(gate):
    assert raw_head_answer(gate["port"], HEAD_LIMIT - 200).startswith(b"HTTP/1.1 200")


def test_zz_no_5xx_and_no_traceback_in_the_log(gate):  # named to run last
    log = server_log(gate["proc"])
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
