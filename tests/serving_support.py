"""Helpers for the serving tests (score, serve, distributed): a detector fitted on real MNIST,
real PNG/JPEG files, and a real uvicorn server process on loopback."""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

SRC = Path(__file__).resolve().parents[1] / "src"


def score_cli(root: Path, inputs: list, output: Path, *extra: str, workers: int = 2) -> int:
    """``odin-ood score`` of ``inputs`` with the MNIST MLP detector of :func:`fit_mnist_detector`
    (saved under ``root / "det"``), one model thread, quiet, ``workers`` decoding threads."""
    from odin_ood.cli import main

    detector = ["--detector", str(root / "det"), "--model", "mnist-mlp"]
    quiet = ["--threads", "1", "--quiet", "--workers", str(workers)]
    return main(["score", *map(str, inputs), "--output", str(output), *detector, *quiet, *extra])


def fit_mnist_detector(shared_data: Path, folder: Path, batch_size: int = 16):
    """The shipped MNIST MLP and an ODIN detector fitted on 300 real MNIST test digits against 300
    notMNIST letters, saved under ``folder``; returns (detector, mnist, notmnist)."""
    from odin_ood import Detector, data, models

    torch.set_num_threads(1)
    mnist = data.load("mnist", root=shared_data)
    notmnist = data.load("notmnist", root=shared_data)
    model = models.load("mnist-mlp")
    det = Detector(model, temperatures=(1.0, 1000.0), epsilons=(0.0, 0.0014), batch_size=batch_size)
    det.fit(mnist.images[:300].float() / 255, notmnist.images[:300].float() / 255)
    det.save(folder)
    return det, mnist, notmnist


def nan_mnist_detector(folder: Path) -> Path:
    """The shipped MNIST MLP with one NaN in its last bias (every score becomes NaN), saved as
    ``folder/nan.safetensors``, and a detector for it (paper parameters, threshold 0.5) saved as
    ``folder/det``: a gate that must fail closed. Returns the weights file."""
    from odin_ood import Detector, models

    model = models.load("mnist-mlp")
    with torch.no_grad():
        model.fc3.bias[0] = float("nan")
    weights = models.save_safetensors(model, folder / "nan.safetensors")
    det = Detector(model)
    det._set_fitted(1000.0, 0.0014, 0.5, 0.95)
    det.save(folder / "det")
    return weights


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    """A uint8 (H, W) array as PNG or JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def write_pngs(folder: Path, images: np.ndarray, names: list[str] | None = None) -> Path:
    """``images`` as PNG files in ``folder`` (``000.png``, ... unless ``names``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, image in enumerate(images):
        (folder / (names[k] if names else f"{k:03d}.png")).write_bytes(encode(image))
    return folder


def encode16(image: np.ndarray) -> bytes:
    """A uint8 (H, W) array as a 16-bit grey PNG (mode I;16) of the same picture: values v * 257."""
    buf = io.BytesIO()
    Image.fromarray(image.astype(np.uint16) * 257).save(buf, format="PNG")
    return buf.getvalue()


def png_header(width: int, height: int, bit_depth: int = 8, color_type: int = 0, pixels: bytes | None = None) -> bytes:
    """A PNG declaring ``width`` x ``height`` in its IHDR chunk (valid CRCs), with one IDAT chunk of
    ``pixels`` (default: a few zlib-compressed zero bytes, far fewer than the size needs): PIL
    opens it and learns the size from the header; decoding it would fail or allocate the whole image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(bytes(64)) if pixels is None else pixels
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def decoded(blob: bytes) -> torch.Tensor:
    """What PIL decodes from ``blob``, as a float (1, H, W) tensor in [0, 1] (independent of odin_ood)."""
    with Image.open(io.BytesIO(blob)) as im:
        return torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[None]


def library_outputs(det, x: torch.Tensor) -> dict[str, list]:
    """``Detector.outputs_for_model_input`` of ``x`` (the model's input) in batches of exactly
    ``det.batch_size`` (the last one zero-padded)."""
    b = det.batch_size
    n = len(x)
    padded = torch.cat([x, x.new_zeros((-n % b, *x.shape[1:]))])
    out = det.outputs_for_model_input(padded)
    return {k: v[:n].tolist() for k, v in out.items()}


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    args: list[str],
    extra_env: dict[str, str] | None = None,
    timeout: float = 300.0,
    log_level: str = "warning",
    cwd: Path | None = None,
    threads: int = 1,
):
    """``python -m odin_ood serve ARGS --threads THREADS`` (in ``cwd``) on a free loopback port;
    (process, base URL) once /healthz answers. The server's output goes to the file
    ``proc.log_path`` (see :func:`server_log`)."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="odin-ood-serve-", suffix=".log", delete=False)  # noqa: SIM115 -- closed once Popen holds it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "odin_ood",
            "serve",
            *args,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--threads",
            str(threads),
            "--log-level",
            log_level,
        ],
        env={**env(), **(extra_env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )
    log.close()
    proc.log_path = Path(log.name)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server_log(proc)}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("server did not answer /healthz in time")


def server_log(proc: subprocess.Popen) -> str:
    return proc.log_path.read_text(errors="replace")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log_path.unlink(missing_ok=True)
