"""Helpers for the model-source tests (hf:, onnx:, torchvision weights enums): real images, and
one ``fit -> score -> serve -> export`` run from the command line checked against ODIN computed on
the original network."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from odin_ood import Detector
from odin_ood.cli import main
from odin_ood.commands.inputs import Inputs
from odin_ood.commands.row_files import read_rows
from odin_ood.detector.fingerprint import fingerprint
from odin_ood.preprocess import Preprocessing, image_pixels, normalise
from serving_support import library_outputs, start_server, stop_server

CIFAR = "cifar10/cifar10-jpeg-test.zip"
TINY = "tiny-imagenet/tiny-imagenet-200-test.zip"
# (width, height) of the non-square pictures: 302x150 resized to a shorter side of 256 is 515 wide,
# an odd margin of 291 around a 224 crop, where rounding down and rounding to even differ
NON_SQUARE = ((300, 150), (302, 150), (150, 301), (600, 457))


def real_images(shared_data: Path) -> dict[str, bytes]:
    """Encoded real pictures: 8 Tiny ImageNet JPEGs (64x64; test_9 is greyscale), 4 CIFAR-10
    JPEGs (32x32) and a Tiny ImageNet picture resized (PIL bicubic) to each of :data:`NON_SQUARE`,
    as JPEG and as PNG (600x457: larger than the models' inputs, so resizing shrinks it)."""
    with zipfile.ZipFile(shared_data / TINY) as z:
        blobs = {f"tiny-{k}.jpg": z.read(f"tiny-imagenet-200/test/images/test_{k}.JPEG") for k in range(8)}
    with zipfile.ZipFile(shared_data / CIFAR) as z:
        blobs.update(
            {
                f"cifar-{n.split('/')[-2]}-{n.split('/')[-1]}": z.read(n)
                for n in sorted(n for n in z.namelist() if n.endswith(".jpg"))[:4]
            }
        )
    picture = Image.open(io.BytesIO(blobs["tiny-3.jpg"])).convert("RGB")
    for w, h in NON_SQUARE:
        for fmt in ("JPEG", "PNG"):
            buf = io.BytesIO()
            picture.resize((w, h), Image.Resampling.BICUBIC).save(buf, fmt)
            blobs[f"wide-{w}x{h}.{fmt.lower()}"] = buf.getvalue()
    assert Image.open(io.BytesIO(blobs["tiny-7.jpg"])).mode in ("L", "RGB")
    return blobs


def write_images(blobs: dict[str, bytes], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
    return folder


def odin_ood_pixels(folder: Path, spec: Preprocessing) -> torch.Tensor:
    """The [0, 1] pixels odin-ood makes of every image in ``folder`` (in the order score lists
    them) at the model's size; ``normalise(pixels, spec)`` is the model's input."""
    inputs = Inputs([folder])
    return torch.stack([image_pixels(inputs.load(i, spec), spec) for i in range(len(inputs))])


def cli_chain(
    model_args: list[str],
    shared_data: Path,
    images: Path,
    root: Path,
    grid: list[str],
    limit: int = 8,
    export: bool = True,
) -> dict:
    """``odin-ood fit`` (``limit`` CIFAR-10 JPEGs as ID, Tiny ImageNet as OOD), ``score`` of the
    pictures in ``images``, ``serve`` answering them over HTTP and ``export`` of the gate:
    {"det": folder, "rows": score's rows, "served": the answers, "exported": the ONNX file or None}."""
    det = root / "det"
    assert (
        main(
            [
                "fit",
                *model_args,
                "--id",
                str(shared_data / CIFAR),
                "--ood",
                str(shared_data / TINY),
                "--limit",
                str(limit),
                "--out",
                str(det),
                "--quiet",
                "--workers",
                "1",
                *grid,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "score",
                *model_args,
                "--detector",
                str(det),
                str(images),
                "--output",
                str(root / "s.jsonl"),
                "--quiet",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    rows = list(read_rows(root / "s.jsonl"))
    batch = json.loads((det / "detector.json").read_text())["batch_size"]  # serve's default ignores activations
    proc, url = start_server(
        [*model_args, "--detector", str(det), "--no-auth", "--max-batch", str(batch)], timeout=300.0
    )
    try:
        files = sorted(images.iterdir())
        r = httpx.post(
            url + "/v1/predict",
            files=[("images", (p.name, p.read_bytes(), "application/octet-stream")) for p in files],
            timeout=300.0,
        )
    finally:
        stop_server(proc)
    assert r.status_code == 200, r.text
    exported = None
    if export:
        exported = root / "gate.onnx"
        assert main(["export", "--detector", str(det), *model_args, "--out", str(exported)]) == 0
    return {"det": det, "rows": rows, "served": r.json()["predictions"], "exported": exported}


def check_chain(
    chain: dict,
    reference: torch.nn.Module,
    pixels: torch.Tensor,
    class_names,
    *,
    tolerance: float = 0.0,
    run_exported: bool = True,
) -> None:
    """The chain's rows equal ODIN computed by the detector on ``reference`` (the original network)
    for ``pixels`` (exactly, or within ``tolerance`` for a converted graph, whose weights the
    detector's fingerprint does not name), the served answers equal the rows, and ONNX Runtime
    runs the exported gate to the rows' classes and scores (within 1e-5; with ``run_exported``
    False, the file is only checked to hold the detector)."""
    d = json.loads((chain["det"] / "detector.json").read_text())
    if tolerance:
        d["model_fingerprint"] = fingerprint(reference)
    det = Detector.from_dict(d, reference)
    det.optimize = True
    want = library_outputs(det, normalise(pixels, det.preprocessing))
    rows = chain["rows"]
    assert len(rows) == len(pixels)
    for k, row in enumerate(rows):
        assert row["error"] == "", row
        assert row["predicted_class"] == want["predicted_class"][k]
        assert abs(row["score"] - want["score"][k]) <= tolerance, (row["source"], row["score"], want["score"][k])
        assert row["class_name"] == (class_names[row["predicted_class"]] if class_names else None)
    for row, answer in zip(rows, chain["served"], strict=True):
        assert (answer["predicted_class"], answer["class_name"], answer["score"]) == (
            row["predicted_class"],
            row["class_name"],
            row["score"],
        )
    if chain["exported"] is not None and run_exported:
        check_exported(chain["exported"], pixels.numpy(), rows)
    elif chain["exported"] is not None:
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(chain["exported"]), load_external_data=False).metadata_props}
        fitted = json.loads((chain["det"] / "detector.json").read_text())
        assert json.loads(meta["odin_ood.detector"]) == {k: v for k, v in fitted.items() if k != "batch_size"}


def check_exported(path: Path, pixels: np.ndarray, rows: list[dict]) -> None:
    """ONNX Runtime runs the exported gate (it takes [0, 1] pixels) to the rows' classes and scores."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n = len(pixels)
    b = session.get_inputs()[0].shape[0]
    if isinstance(b, int):  # a graph of one batch size: pad the last batch
        padded = np.concatenate([pixels, np.zeros((-n % b, *pixels.shape[1:]), np.float32)])
    else:  # any batch size: batches of 8, the last one short
        padded, b = pixels, 8
    scores, classes = [], []
    for i in range(0, len(padded), b):
        got = dict(
            zip([o.name for o in session.get_outputs()], session.run(None, {"pixels": padded[i : i + b]}), strict=True)
        )
        scores += got["score"].tolist()
        classes += got["predicted_class"].tolist()
    assert classes[:n] == [r["predicted_class"] for r in rows]
    assert max(abs(s - r["score"]) for s, r in zip(scores, rows, strict=True)) <= 1e-5
