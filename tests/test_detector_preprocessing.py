"""The detector records its whole preprocessing: saved and loaded with it, applied by ``score``
and ``serve`` with no flag (the same scores, bit for bit, as the Python API), a contradicting
flag is one error, and files written before it was recorded load as they did."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from odin_ood import Detector, data, models
from odin_ood.cli import main
from odin_ood.commands.loading import load_detector, preprocessing_for
from odin_ood.commands.options import ModelOptions
from odin_ood.preprocess import Preprocessing, decode, image_tensor
from serving_support import library_outputs, start_server, stop_server

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SIZE = (45, 37)  # (width, height) of the files: not the model's 28x28
SQUASH = Preprocessing((1, 28, 28), "squash", "bilinear", (28, 28), (0.0,), (1.0,))


def _write(folder, images: np.ndarray, fmt: str = "PNG") -> list:
    """Real digits/letters resized (PIL bicubic) to SIZE and saved, as a user's files of another size."""
    folder.mkdir()
    paths = []
    for k, a in enumerate(images):
        path = folder / f"{k:03d}.{fmt.lower()}"
        Image.fromarray(a).resize(SIZE, Image.Resampling.BICUBIC).save(path, fmt)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def fitted(shared_data, tmp_path_factory):
    """``odin-ood fit`` of the shipped MNIST MLP on 40 MNIST digits vs 40 notMNIST letters, all
    45x37 files, with ``--resize squash --interpolation bilinear``; 8 other files (PNG and JPEG) to score."""
    root = tmp_path_factory.mktemp("recorded")
    mnist = data.load("mnist", root=shared_data).images[:, 0].numpy()
    letters = data.load("notmnist", root=shared_data).images[:, 0].numpy()
    _write(root / "id", mnist[:40])
    _write(root / "ood", letters[:40])
    score = _write(root / "score", mnist[100:104]) + _write(root / "score-jpeg", letters[100:104], "JPEG")
    code = main(
        [
            "fit",
            "--model",
            "mnist-mlp",
            "--id",
            str(root / "id"),
            "--ood",
            str(root / "ood"),
            "--out",
            str(root / "det"),
            "--temperatures",
            "1000",
            "--epsilons",
            "0,0.0014",
            "--holdout",
            "0",
            "--resize",
            "squash",
            "--interpolation",
            "bilinear",
            "--batch-size",
            "8",
            "--quiet",
            "--workers",
            "1",
        ]
    )
    assert code == 0
    return root, score


def test_the_detector_file_records_the_preprocessing_and_loads_it(fitted):
    root, _ = fitted
    saved = json.loads((root / "det" / "detector.json").read_text())
    assert saved["preprocessing"] == {
        "input_shape": [1, 28, 28],
        "mode": "L",
        "resize": "squash",
        "resize_size": [28, 28],
        "interpolation": "bilinear",
        "mean": [0.0],
        "std": [1.0],
    }
    det = Detector.load(root / "det", models.load("mnist-mlp"))
    assert det.preprocessing == SQUASH and det.preprocessing_ == SQUASH
    assert Detector.from_dict(det.to_dict(), det.model).preprocessing == SQUASH


def test_api_score_command_and_serve_give_bit_identical_outputs_with_no_flag(fitted, tmp_path):
    root, files = fitted
    det = Detector.load(root / "det", models.load("mnist-mlp"))
    blobs = [f.read_bytes() for f in files]
    x = torch.stack([image_tensor(decode(b, det.preprocessing), det.preprocessing) for b in blobs])
    # the input itself, computed independently: PIL's decode, torch bilinear without antialiasing, rounded
    pixels = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("L"), np.float32)) for f in files])
    small = F.interpolate(pixels[:, None], size=(28, 28), mode="bilinear", align_corners=False, antialias=False)
    assert torch.equal(x, small.round().clamp(0, 255) / 255)
    want = library_outputs(det, x)

    out = tmp_path / "scores.jsonl"
    assert (
        main(
            [
                "score",
                str(root / "score"),
                str(root / "score-jpeg"),
                "--output",
                str(out),
                "--detector",
                str(root / "det"),
                "--model",
                "mnist-mlp",
                "--quiet",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["score"] for r in rows] == want["score"] and [r["error"] for r in rows] == [""] * len(files)

    proc, url = start_server(
        ["--detector", str(root / "det"), "--model", "mnist-mlp", "--max-batch", "8", "--no-auth"], timeout=180.0
    )
    try:
        r = httpx.post(
            url + "/v1/predict",
            files=[("images", (f.name, b)) for f, b in zip(files, blobs, strict=True)],
            timeout=120.0,
        )
        described = httpx.get(url + "/v1/detector", timeout=30.0).json()
    finally:
        stop_server(proc)
    assert r.status_code == 200, r.text
    assert [p["score"] for p in r.json()["predictions"]] == want["score"]
    assert described["preprocessing"] == SQUASH.to_dict()


def test_a_flag_that_contradicts_the_file_is_one_error_naming_field_and_values(fitted, capsys):
    root, _ = fitted
    det = Detector.load(root / "det", models.load("mnist-mlp"))
    with pytest.raises(
        ValueError,
        match=r"--input-mean 0.5 but the detector records mean 0.0; "
        r"--resize none but the detector records resize squash\. Drop the flag",
    ):
        preprocessing_for(det, ModelOptions("mnist-mlp", resize="none", input_mean=(0.5,)))
    agreeing = ModelOptions("mnist-mlp", resize="squash", interpolation="bilinear", resize_size=(28,), max_side=99)
    assert preprocessing_for(det, agreeing) == SQUASH and preprocessing_for(det, agreeing).max_side == 99
    code = main(
        [
            "score",
            str(root / "score"),
            "--output",
            str(root / "x.csv"),
            "--detector",
            str(root / "det"),
            "--model",
            "mnist-mlp",
            "--interpolation",
            "box",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "--interpolation box but the detector records interpolation bilinear" in err


def test_the_old_resize_flag_says_where_the_filter_went(capsys):
    with pytest.raises(SystemExit):
        main(["score", "x/", "--output", "s.csv", "--detector", "d/", "--model", "mnist-mlp", "--resize", "bilinear"])
    assert (
        "--resize squash --interpolation bilinear-antialias for what --resize bilinear did before"
        in capsys.readouterr().err
    )


def test_a_file_written_before_the_preprocessing_was_recorded_loads_as_before(fitted, tmp_path):
    root, files = fitted
    old = json.loads((root / "det" / "detector.json").read_text())
    del old["preprocessing"]
    (tmp_path / "detector.json").write_text(json.dumps(old))
    det, p = load_detector(ModelOptions("mnist-mlp"), tmp_path)
    assert Detector.load(tmp_path, models.load("mnist-mlp")).preprocessing is None  # nothing recorded
    assert p == Preprocessing((1, 28, 28), mean=(0.0,), std=(1.0,))  # no resizing, the model's statistics
    with pytest.raises(ValueError, match="resizing is off"):
        image_tensor(decode(files[0].read_bytes(), p), p)
    # the flags may still ask for resizing (nothing recorded to contradict), and then match the recorded run
    det, p = load_detector(ModelOptions("mnist-mlp", resize="squash", interpolation="bilinear"), tmp_path)
    assert p == SQUASH and det.preprocessing_ == SQUASH


def test_a_detector_refuses_statistics_its_preprocessing_contradicts(digits_model):
    det = Detector(digits_model, input_std=(0.5,), preprocessing=Preprocessing((1, 8, 8), std=(1.0,)))
    with pytest.raises(ValueError, match=r"input_std \(0.5,\) disagrees with the preprocessing's std \(1.0,\)"):
        det.fit(torch.rand(8, 1, 8, 8))
