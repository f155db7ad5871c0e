"""The HTTP gate under a broken model and misbehaving clients, on a real uvicorn process on
loopback: NaN scores fail closed, a client that goes away costs one info line, idle and slow
clients are cut off by the header and body deadlines, over-limit connections get 503 at once,
and a missing or empty API key stops the server from starting."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from odin_ood.commands.serve import resolve_api_key
from serving_support import encode, env, free_port, nan_mnist_detector, server_log, start_server, stop_server

LIMIT = 24


@pytest.fixture(scope="module")
def nan_gate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nan-gate")
    weights = nan_mnist_detector(folder)
    proc, url = start_server(
        [
            "--detector",
            str(folder / "det"),
            "--model",
            "mnist-mlp",
            "--weights",
            str(weights),
            "--no-auth",
            "--max-batch",
            "8",
            "--header-timeout",
            "1",
            "--body-timeout",
            "1",
            "--timeout-keep-alive",
            "1",
            "--limit-concurrency",
            str(LIMIT),
            "--h11-max-incomplete-event-size",
            "4096",
        ],
        log_level="info",
    )
    yield {"proc": proc, "url": url, "port": int(url.rsplit(":", 1)[1]), "folder": folder}
    stop_server(proc)


def connect(gate) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", gate["port"]), timeout=5)
    return s


def read_answer(s: socket.socket, timeout: float = 4.0) -> bytes:
    """A whole HTTP answer (head and Content-Length bytes of body) from a raw socket."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    found = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.startswith(b"content-length:")]
    return int(found[0]) if found else 0


def closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_nan_scores_answer_out_of_distribution_with_the_reason(nan_gate):
    digits = np.random.default_rng(0).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    r = httpx.post(
        nan_gate["url"] + "/v1/predict", files=[("images", (f"{i}.png", encode(d))) for i, d in enumerate(digits)]
    )
    assert r.status_code == 200, r.text
    for p in r.json()["predictions"]:
        assert p["is_out_of_distribution"] is True and p["score"] is None and p["confidence"] is None
        assert "not finite" in p["error"] and "fails closed" in p["error"]


def test_a_client_that_goes_away_costs_one_info_line(nan_gate):
    head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"images": ['
    )
    for _ in range(5):
        with connect(nan_gate) as s:
            s.sendall(head)
            time.sleep(0.1)
    time.sleep(0.5)
    log = server_log(nan_gate["proc"])
    assert log.count("went away before sending the whole request") == 5, log[-2000:]
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]


def test_idle_and_trickling_connections_are_closed_and_over_limit_ones_get_503(nan_gate):
    idle = [connect(nan_gate) for _ in range(LIMIT + 4)]
    try:
        r = httpx.get(nan_gate["url"] + "/healthz", timeout=5)
        assert r.status_code == 503  # over --limit-concurrency: refused at once, not left hanging
        # the head trickles one byte per 0.1 s (56 bytes: >= 5.6 s), far past --header-timeout 1:
        # the server must close the connection before the head is complete
        trickler, closed = connect(nan_gate), False
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 40:
            try:
                trickler.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if select.select([trickler], [], [], 0.1)[0] and closed_by_server(trickler, 0.1):
                closed = True
                break
        trickler.close()
        assert closed
        assert all(closed_by_server(s, 2.0) for s in idle)
        assert httpx.get(nan_gate["url"] + "/healthz", timeout=5).status_code == 200
    finally:
        for s in idle:
            s.close()


def test_a_body_that_trickles_gets_408(nan_gate):
    with connect(nan_gate) as s:
        s.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"images"'
        )
        answer = read_answer(s)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"not received within 1 s" in answer


def test_a_request_head_growing_past_the_h11_limit_is_refused(nan_gate):
    with connect(nan_gate) as s:  # 8 kB of head and still no end: refused without waiting for more
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000)
        assert read_answer(s).startswith(b"HTTP/1.1 400")
    assert httpx.get(nan_gate["url"] + "/healthz").status_code == 200


def _serve_exit(args: list[str], key_env: dict[str, str]) -> tuple[int, str]:
    run_env = {k: v for k, v in env().items() if k != "ODIN_OOD_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "odin_ood", "serve", "--port", str(free_port()), *args],
        env={**run_env, **key_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(
    "args,key_env,message",
    [
        ([], {"ODIN_OOD_API_KEY": ""}, "ODIN_OOD_API_KEY is set but empty"),
        ([], {}, "no API key: set ODIN_OOD_API_KEY"),
    ],
    ids=["empty env key", "no key at all"],
)
def test_a_missing_or_empty_key_stops_the_server_at_start(nan_gate, args, key_env, message):
    code, err = _serve_exit(["--detector", str(nan_gate["folder"] / "det"), "--model", "mnist-mlp", *args], key_env)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1


def test_keys_are_utf8_without_spaces_or_control_characters():
    assert resolve_api_key(None, {"ODIN_OOD_API_KEY": "clé-🔑"}, False) == "clé-🔑"
    assert resolve_api_key("k", {}, False) == "k" and resolve_api_key(None, {}, True) is None
    for bad in (" key", "key\n", "k\x00y", "\udcff"):
        with pytest.raises(ValueError):
            resolve_api_key(bad, {}, False)
    with pytest.raises(ValueError, match="--api-key is set but empty"):
        resolve_api_key("", {"ODIN_OOD_API_KEY": "k"}, False)
    with pytest.raises(ValueError, match=r"--no-auth, but \$ODIN_OOD_API_KEY gives a key"):
        resolve_api_key(None, {"ODIN_OOD_API_KEY": "k"}, True)


BAD_FILES = [  # detector.json fields, what the one line says
    ({"preprocessing": {"mean": [10**400]}}, "mean must be 1 or 1 finite numbers"),
    ({"preprocessing": {"resize": "resize-shorter-then-center-crop", "resize_size": 65536}}, "PIL's pixel limit"),
    ({"input_shape": [1, 65536, 65536]}, "PIL's pixel limit"),
]


@pytest.mark.parametrize(
    "edit,message", BAD_FILES, ids=["mean 10**400", "resize_size 65536", "input_shape 65536x65536"]
)
def test_a_detector_file_stating_what_no_server_can_hold_stops_it_at_start_in_one_line(
    nan_gate, tmp_path, edit, message
):
    import json

    d = json.loads((nan_gate["folder"] / "det" / "detector.json").read_text())
    for key, value in edit.items():
        d[key] = {**d[key], **value} if isinstance(value, dict) else value
    (tmp_path / "detector.json").write_text(json.dumps(d))
    code, err = _serve_exit(
        [
            "--detector",
            str(tmp_path),
            "--model",
            "mnist-mlp",
            "--weights",
            str(nan_gate["folder"] / "nan.safetensors"),
            "--no-auth",
        ],
        {},
    )
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("--port", "9" * 30, "--port must lie in [0, 65535]"),
        ("--max-wait-ms", "1e400", "--max-wait-ms must be a finite number"),
        ("--max-batch", "9" * 30, "--max-batch must lie in [1, 65536]"),
        ("--header-timeout", "inf", "--header-timeout must be a finite number"),
    ],
)
def test_serve_flags_out_of_range_stop_it_at_start_in_one_line(nan_gate, flag, value, message):
    code, err = _serve_exit(
        [
            "--detector",
            str(nan_gate["folder"] / "det"),
            "--model",
            "mnist-mlp",
            "--weights",
            str(nan_gate["folder"] / "nan.safetensors"),
            "--no-auth",
            flag,
            value,
        ],
        {},
    )
    assert code == 2 and message in err and err.count("\n") == 1, err
