"""``odin-ood export`` writes one ONNX file that ONNX Runtime runs to eager torch's outputs, and
``odin-ood score`` / ``odin-ood serve`` with ``--runtime`` give eager torch's rows and answers,
on real MNIST and notMNIST images with the shipped MNIST MLP."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from serving_support import decoded, encode, fit_mnist_detector, library_outputs, start_server, stop_server

from odin_ood.cli import main
from odin_ood.commands.writers import read_rows

pytest.importorskip("onnxscript")
BATCH = 16


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    det, mnist, notmnist = fit_mnist_detector(shared_data, root / "det", batch_size=BATCH)
    images = np.concatenate([mnist.images[3000:3025, 0].numpy(), notmnist.images[3000:3025, 0].numpy()])
    folder = root / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        (folder / f"{i:02d}.png").write_bytes(encode(image))
    return {"root": root, "det": det, "images": images, "folder": folder}


def test_export_writes_one_onnx_file_that_onnxruntime_runs_to_the_eager_gate(setup, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "gate.onnx"
    args = ["export", "--detector", str(setup["root"] / "det"), "--model", "mnist-mlp", "--out", str(out), "--threads", "1"]
    assert main(args) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    assert session.get_inputs()[0].shape == [BATCH, 1, 28, 28]
    pixels = np.stack([setup["images"][i][None].astype(np.float32) / 255.0 for i in range(BATCH)])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"pixels": pixels})))
    want = library_outputs(setup["det"], torch.from_numpy(pixels))
    assert got["predicted_class"].tolist() == want["predicted_class"]
    assert got["is_out_of_distribution"].tolist() == want["is_out_of_distribution"]
    assert np.abs(got["score"] - np.array(want["score"])).max() <= 1e-5
    assert json.loads(session.get_modelmeta().custom_metadata_map["odin_ood.detector"]) == setup["det"].to_dict()
    # exported once per detector and batch size: a second export copies the cached file
    cached, = [p for p in (Path(os.environ["ODIN_OOD_CACHE"]) / "export").glob(f"odin-gate-b{BATCH}-*.onnx")
               if p.read_bytes() == out.read_bytes()]
    made = cached.stat().st_mtime_ns
    assert main(args) == 0
    assert cached.stat().st_mtime_ns == made and out.read_bytes() == cached.read_bytes()
    assert f"cached in {cached.parent}" in capsys.readouterr().err


def test_export_to_a_file_that_is_not_onnx_is_one_error_line(setup, tmp_path, capsys):
    assert main(["export", "--detector", str(setup["root"] / "det"), "--model", "mnist-mlp",
                 "--out", str(tmp_path / "gate.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"odin-ood export: error: --out must name a .onnx file, got {tmp_path / 'gate.json'}"]


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_score_with_a_graph_runtime_gives_the_eager_rows(setup, tmp_path, runtime):
    pytest.importorskip(runtime)
    rows = {}
    for name in ("torch", runtime):
        out = tmp_path / f"{name}.csv"
        assert main(["score", str(setup["folder"]), "--output", str(out), "--detector", str(setup["root"] / "det"),
                     "--model", "mnist-mlp", "--threads", "1", "--quiet", "--workers", "1", "--runtime", name]) == 0
        rows[name] = list(read_rows(out))
    eager, graph = rows["torch"], rows[runtime]
    assert [r["source"] for r in graph] == [r["source"] for r in eager] and len(graph) == 50
    for g, e in zip(graph, eager):
        assert (g["predicted_class"], g["is_out_of_distribution"], g["error"]) == \
            (e["predicted_class"], e["is_out_of_distribution"], e["error"])
        assert abs(float(g["score"]) - float(e["score"])) <= 1e-5


def test_serve_with_openvino_answers_as_the_library(setup):
    pytest.importorskip("openvino")
    proc, url = start_server(["--detector", str(setup["root"] / "det"), "--model", "mnist-mlp", "--no-auth",
                              "--max-batch", str(BATCH), "--runtime", "openvino"], timeout=240.0)
    try:
        blobs = [encode(setup["images"][i]) for i in (0, 7, 30, 45)]
        r = httpx.post(url + "/v1/predict", files=[("images", (f"{i}.png", b)) for i, b in enumerate(blobs)], timeout=60)
        assert r.status_code == 200, r.text
        want = library_outputs(setup["det"], torch.stack([decoded(b) for b in blobs]))
        got = r.json()["predictions"]
        assert [p["predicted_class"] for p in got] == want["predicted_class"]
        assert [p["is_out_of_distribution"] for p in got] == want["is_out_of_distribution"]
        assert max(abs(p["score"] - s) for p, s in zip(got, want["score"])) <= 1e-5
        assert httpx.get(url + "/v1/detector", timeout=10).json()["runtime"] == "openvino"
    finally:
        stop_server(proc)
