"""``odin-ood export`` writes one ONNX file that ONNX Runtime runs to eager torch's outputs, and
``odin-ood score`` / ``odin-ood serve`` with ``--runtime`` give eager torch's rows and answers,
on real MNIST and notMNIST images with the shipped MNIST MLP. ``--out`` is never written through
a symbolic link, a non-regular file is refused, an existing file is replaced (renamed over) only
with ``--overwrite``; a model that cannot be exported is one error line from export, score and
serve, and nothing is written."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from odin_ood import Detector, models
from odin_ood.cli import main
from odin_ood.commands.row_files import read_rows
from serving_support import decoded, encode, fit_mnist_detector, library_outputs, start_server, stop_server

pytest.importorskip("onnxscript")
BATCH = 16
TESTS = Path(__file__).resolve().parent


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
    args = [
        "export",
        "--detector",
        str(setup["root"] / "det"),
        "--model",
        "mnist-mlp",
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    assert main(args) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    assert session.get_inputs()[0].shape == ["batch", 1, 28, 28]  # any batch size
    pixels = np.stack([setup["images"][i][None].astype(np.float32) / 255.0 for i in range(BATCH)])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"pixels": pixels}), strict=True))
    want = library_outputs(setup["det"], torch.from_numpy(pixels))
    assert got["predicted_class"].tolist() == want["predicted_class"]
    assert got["is_out_of_distribution"].tolist() == want["is_out_of_distribution"]
    assert np.abs(got["score"] - np.array(want["score"])).max() <= 1e-5
    recorded = json.loads(session.get_modelmeta().custom_metadata_map["odin_ood.detector"])
    assert recorded == {k: v for k, v in setup["det"].to_dict().items() if k != "batch_size"}  # any batch
    # exported once per detector: a second export copies the cached file
    (cached,) = [
        p
        for p in (Path(os.environ["ODIN_OOD_CACHE"]) / "export").glob("odin-gate-dynamic-*.onnx")
        if p.read_bytes() == out.read_bytes()
    ]
    made = cached.stat().st_mtime_ns
    assert main([*args, "--overwrite"]) == 0
    assert cached.stat().st_mtime_ns == made and out.read_bytes() == cached.read_bytes()
    assert f"cached in {cached.parent}" in capsys.readouterr().err


def test_export_to_a_file_that_is_not_onnx_is_one_error_line(setup, tmp_path, capsys):
    assert (
        main(
            [
                "export",
                "--detector",
                str(setup["root"] / "det"),
                "--model",
                "mnist-mlp",
                "--out",
                str(tmp_path / "gate.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"odin-ood export: error: --out must name a .onnx file, got {tmp_path / 'gate.json'}"]


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_score_with_a_graph_runtime_gives_the_eager_rows(setup, tmp_path, runtime):
    pytest.importorskip(runtime)
    rows = {}
    for name in ("torch", runtime):
        out = tmp_path / f"{name}.csv"
        assert (
            main(
                [
                    "score",
                    str(setup["folder"]),
                    "--output",
                    str(out),
                    "--detector",
                    str(setup["root"] / "det"),
                    "--model",
                    "mnist-mlp",
                    "--threads",
                    "1",
                    "--quiet",
                    "--workers",
                    "1",
                    "--runtime",
                    name,
                ]
            )
            == 0
        )
        rows[name] = list(read_rows(out))
    eager, graph = rows["torch"], rows[runtime]
    assert [r["source"] for r in graph] == [r["source"] for r in eager] and len(graph) == 50
    for g, e in zip(graph, eager, strict=True):
        assert (g["predicted_class"], g["is_out_of_distribution"], g["error"]) == (
            e["predicted_class"],
            e["is_out_of_distribution"],
            e["error"],
        )
        assert abs(float(g["score"]) - float(e["score"])) <= 1e-5


def test_serve_with_openvino_answers_as_the_library(setup):
    pytest.importorskip("openvino")
    proc, url = start_server(
        [
            "--detector",
            str(setup["root"] / "det"),
            "--model",
            "mnist-mlp",
            "--no-auth",
            "--max-batch",
            str(BATCH),
            "--runtime",
            "openvino",
        ],
        timeout=240.0,
    )
    try:
        blobs = [encode(setup["images"][i]) for i in (0, 7, 30, 45)]
        r = httpx.post(
            url + "/v1/predict", files=[("images", (f"{i}.png", b)) for i, b in enumerate(blobs)], timeout=60
        )
        assert r.status_code == 200, r.text
        want = library_outputs(setup["det"], torch.stack([decoded(b) for b in blobs]))
        got = r.json()["predictions"]
        assert [p["predicted_class"] for p in got] == want["predicted_class"]
        assert [p["is_out_of_distribution"] for p in got] == want["is_out_of_distribution"]
        assert max(abs(p["score"] - s) for p, s in zip(got, want["score"], strict=True)) <= 1e-5
        assert httpx.get(url + "/v1/detector", timeout=10).json()["runtime"] == "openvino"
    finally:
        stop_server(proc)


def export_args(setup, out: Path, *extra: str) -> list[str]:
    return [
        "export",
        "--detector",
        str(setup["root"] / "det"),
        "--model",
        "mnist-mlp",
        "--out",
        str(out),
        "--threads",
        "1",
        *extra,
    ]


def error_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
@pytest.mark.parametrize("target_exists", [False, True], ids=["dangling", "existing-file"])
def test_export_never_writes_through_a_symbolic_link(setup, tmp_path, capsys, target_exists, overwrite):
    elsewhere = tmp_path / "elsewhere" / "victim.onnx"
    elsewhere.parent.mkdir()
    if target_exists:
        elsewhere.write_bytes(b"someone else's file")
    out = tmp_path / "gate.onnx"
    out.symlink_to(elsewhere)
    assert main(export_args(setup, out, *overwrite)) == 2
    assert error_lines(capsys) == [
        f"odin-ood export: error: {out} is a symbolic link: odin-ood never writes through "
        "one; delete it or choose another --out"
    ]
    assert out.is_symlink() and os.readlink(out) == str(elsewhere)
    assert elsewhere.read_bytes() == b"someone else's file" if target_exists else not os.path.lexists(elsewhere)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "gate.onnx"]  # no temporary file left


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_export_refuses_an_out_that_is_not_a_regular_file(setup, tmp_path, capsys, kind):
    out = tmp_path / "gate.onnx"
    out.mkdir() if kind == "folder" else os.mkfifo(out)
    assert main(export_args(setup, out, "--overwrite")) == 2
    assert error_lines(capsys) == [
        f"odin-ood export: error: {out} is not a regular file: not a file odin-ood "
        "export wrote: not touched; choose another --out, or move it away"
    ]
    assert (stat.S_ISDIR if kind == "folder" else stat.S_ISFIFO)(os.lstat(out).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["gate.onnx"]


def test_export_replaces_an_existing_file_only_with_overwrite_and_by_renaming(setup, tmp_path, capsys):
    out = tmp_path / "gate.onnx"
    out.write_bytes(b"an older export")
    assert main(export_args(setup, out)) == 2
    assert error_lines(capsys) == [f"odin-ood export: error: {out} exists: choose another --out, or pass --overwrite"]
    assert out.read_bytes() == b"an older export"
    other_name = tmp_path / "hard-link.onnx"  # a second name of the old file keeps the old bytes: renamed over
    os.link(out, other_name)
    assert main(export_args(setup, out, "--overwrite")) == 0
    (cached,) = (Path(os.environ["ODIN_OOD_CACHE"]) / "export").glob("odin-gate-dynamic-*.onnx")
    assert out.read_bytes() == cached.read_bytes() and other_name.read_bytes() == b"an older export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gate.onnx", "hard-link.onnx"]


@pytest.fixture(scope="module")
def lenet_detector(setup, shared_data):
    """An ODIN detector for the shipped LeNet (whose weights the models of export_support.py share),
    fitted on 100 real MNIST digits against 100 notMNIST letters (the setup's images)."""
    from odin_ood import data

    root = Path(setup["root"])
    digits, letters = data.load("mnist", root=shared_data), data.load("notmnist", root=shared_data)
    det = Detector(models.load("mnist-lenet"), temperatures=(1000.0,), epsilons=(0.0014,), batch_size=BATCH)
    det.fit(digits.images[:100].float() / 255, letters.images[:100].float() / 255)
    det.save(root / "lenet-det")
    return root / "lenet-det"


@pytest.mark.parametrize("command", ["export", "score", "serve"])
def test_a_model_with_data_dependent_control_flow_is_one_error_line(
    setup, lenet_detector, tmp_path, capsys, monkeypatch, command
):
    pytest.importorskip("onnxruntime")
    monkeypatch.syspath_prepend(str(TESTS))
    common = ["--detector", str(lenet_detector), "--model", "export_support:branching", "--threads", "1"]
    cache = Path(os.environ["ODIN_OOD_CACHE"]) / "export"

    def cached() -> list[Path]:
        return sorted(cache.iterdir()) if cache.exists() else []

    before = cached()
    argv = {
        "export": ["export", *common, "--out", str(tmp_path / "gate.onnx")],
        "score": [
            "score",
            str(setup["folder"]),
            "--output",
            str(tmp_path / "rows.csv"),
            *common,
            "--runtime",
            "onnxruntime",
            "--quiet",
            "--workers",
            "1",
        ],
        "serve": ["serve", *common, "--runtime", "onnxruntime", "--no-auth", "--port", "0"],
    }[command]
    assert main(argv) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and err[0].startswith(
        f"odin-ood {command}: error: the model's forward has data-dependent control flow"
    ), err
    assert "`if x.mean() > 5.0:" in err[0] and err[0].endswith(": score it with --runtime torch")
    assert list(tmp_path.iterdir()) == [] and cached() == before
