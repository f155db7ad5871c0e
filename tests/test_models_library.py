"""torchvision and timm networks at ImageNet size, end to end (marker ``libraries``: run where a
torch build imports both, ``python -m pytest -m libraries``; .ci/run does, and fails on any skip).

For torchvision resnet18, timm resnet18 and timm vit_tiny_patch16_224 (random weights saved to a
temporary file: no pretrained file can be had offline): ``models.load`` gives exactly the logits
of the library's own model on real images, a fine-tuned 10-class head is read from the
checkpoint, and ``fit -> score -> serve`` on real JPEGs (CIFAR-10 as ID, Tiny ImageNet as OOD,
a 2x2 grid) gives rows equal to ODIN computed on the library's own model, served answers equal to
the rows, with the library's class names where the head has them. torchvision's vit_b_16 is
checked for equal logits only (its fit would cost minutes of CI). Bad inputs end in one line.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import save_file

from odin_ood import Detector, models
from odin_ood.cli import main
from odin_ood.commands.inputs import Inputs
from odin_ood.commands.loading import load_detector
from odin_ood.commands.options import ModelOptions
from odin_ood.commands.row_files import read_rows
from odin_ood.preprocess import image_tensor
from serving_support import library_outputs, start_server, stop_server

pytestmark = pytest.mark.libraries
torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

CIFAR = "cifar10/cifar10-jpeg-test.zip"
TINY = "tiny-imagenet/tiny-imagenet-200-test.zip"
GRID = ["--temperatures", "1,1000", "--epsilons", "0,0.0014"]
# (spec, classes of the saved head): 1000 keeps the library's ImageNet names, 10 is a fine-tuned head
CASES = [("torchvision:resnet18", 1000), ("timm:resnet18", 10), ("timm:vit_tiny_patch16_224", 1000)]


def reference(spec: str, classes: int) -> torch.nn.Module:
    library, name = spec.split(":")
    torch.manual_seed(0)
    if library == "torchvision":
        return torchvision.models.get_model(name, weights=None, num_classes=classes).eval()
    return timm.create_model(name, pretrained=False, num_classes=classes).eval()


def expected_names(spec: str, classes: int) -> tuple[str, ...] | None:
    if classes != 1000:
        return None
    if spec.startswith("torchvision:"):
        return tuple(torchvision.models.get_model_weights(spec.split(":")[1]).DEFAULT.meta["categories"])
    return tuple(timm.data.ImageNetInfo("imagenet-1k").label_descriptions())


@pytest.fixture(scope="module")
def images(shared_data, tmp_path_factory) -> Path:
    """12 real JPEGs as files: 6 CIFAR-10 test images and 6 Tiny ImageNet test images."""
    folder = tmp_path_factory.mktemp("jpegs")
    for zip_name, tag in ((CIFAR, "cifar"), (TINY, "tiny")):
        with zipfile.ZipFile(shared_data / zip_name) as z:
            names = sorted(n for n in z.namelist() if n.lower().endswith((".jpg", ".jpeg")))[5000:5006]
            for k, n in enumerate(names):
                (folder / f"{tag}{k}.jpg").write_bytes(z.read(n))
    return folder


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def fitted(request, shared_data, images, tmp_path_factory):
    spec, classes = request.param
    root = tmp_path_factory.mktemp(spec.replace(":", "-"))
    ref = reference(spec, classes)
    weights = root / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, weights)
    torch.set_num_threads(2)
    model_args = ["--model", spec, "--weights", str(weights), "--threads", "2"]
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
                "24",
                "--out",
                str(root / "det"),
                "--quiet",
                "--workers",
                "2",
                *GRID,
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
                str(root / "det"),
                str(images),
                "--output",
                str(root / "s.jsonl"),
                "--quiet",
                "--workers",
                "2",
            ]
        )
        == 0
    )
    return {
        "spec": spec,
        "classes": classes,
        "ref": ref,
        "weights": weights,
        "root": root,
        "model_args": model_args,
        "rows": list(read_rows(root / "s.jsonl")),
    }


def model_inputs(fitted, images) -> torch.Tensor:
    options = ModelOptions(model=fitted["spec"], weights=str(fitted["weights"]))
    _, spec = load_detector(options, fitted["root"] / "det")
    inputs = Inputs([images])
    return torch.stack([image_tensor(inputs.load(i, spec), spec) for i in range(len(inputs))])


def test_loaded_model_gives_the_library_models_logits(fitted, images):
    model = models.load(fitted["spec"], weights=fitted["weights"])  # the head's size read from the file
    assert model.num_classes == fitted["classes"]
    x = model_inputs(fitted, images)
    with torch.no_grad():
        assert torch.equal(model(x), fitted["ref"](x))


def test_score_rows_equal_odin_on_the_library_model(fitted, images):
    det = Detector.load(fitted["root"] / "det", fitted["ref"])  # fingerprint: the same weights
    det.optimize = True  # as score and serve load it: batch norm folded (within ~1e-8 of the model as given)
    assert det.batch_size < 128  # 224 px: the batch comes from --max-memory, not the 28-px default
    want = library_outputs(det, model_inputs(fitted, images))
    rows, names = fitted["rows"], expected_names(fitted["spec"], fitted["classes"])
    assert [r["source"] for r in rows] == [str(p) for p in sorted(images.iterdir())]
    for k, row in enumerate(rows):
        assert row["error"] == ""
        assert (row["predicted_class"], row["score"], row["confidence"]) == (
            want["predicted_class"][k],
            want["score"][k],
            want["confidence"][k],
        )
        assert row["class_name"] == (names[row["predicted_class"]] if names else None)


def test_served_answers_equal_the_rows(fitted, images):
    detector_json = json.loads((fitted["root"] / "det" / "detector.json").read_text())
    proc, url = start_server(
        [
            *fitted["model_args"][:-2],
            "--detector",
            str(fitted["root"] / "det"),
            "--no-auth",
            "--max-batch",
            str(detector_json["batch_size"]),
        ],
        timeout=180.0,
    )
    try:
        files = sorted(images.iterdir())
        r = httpx.post(
            url + "/v1/predict",
            files=[("images", (p.name, p.read_bytes(), "image/jpeg")) for p in files],
            timeout=120.0,
        )
    finally:
        stop_server(proc)
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    for row, answer in zip(fitted["rows"], got, strict=True):
        assert (answer["predicted_class"], answer["class_name"], answer["score"]) == (
            row["predicted_class"],
            row["class_name"],
            row["score"],
        )


def test_torchvision_vit_gives_the_library_models_logits(tmp_path, images):
    ref = reference("torchvision:vit_b_16", 10)
    torch.save(ref.state_dict(), tmp_path / "vit.pth")
    model = models.load("torchvision:vit_b_16", weights=tmp_path / "vit.pth")
    assert model.num_classes == 10 and model.input_shape == (3, 224, 224)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


def one_error_line(capsys, argv: list[str], command: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"odin-ood {command}: error: ") and err.count("\n") == 1, err
    return err


def test_unknown_architecture_is_one_line(capsys, tmp_path, shared_data):
    (tmp_path / "w.pth").write_bytes(b"")
    for spec, message in (
        ("timm:resnet_nonexistent", "timm has no model 'resnet_nonexistent'"),
        ("torchvision:resnet_nonexistent", "torchvision has no model 'resnet_nonexistent'"),
    ):
        err = one_error_line(
            capsys,
            [
                "fit",
                "--model",
                spec,
                "--weights",
                str(tmp_path / "w.pth"),
                "--id",
                "mnist",
                "--out",
                str(tmp_path / "d"),
                "--data-root",
                str(shared_data),
            ],
            "fit",
        )
        assert message in err


def test_weights_of_another_head_size_say_what_to_pass(capsys, tmp_path):
    ref = reference("timm:resnet18", 10)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path / "w.safetensors")
    err = one_error_line(
        capsys,
        [
            "score",
            "--model",
            "timm:resnet18",
            "--weights",
            str(tmp_path / "w.safetensors"),
            "--num-classes",
            "5",
            "--detector",
            str(tmp_path / "det"),
            "mnist",
            "--output",
            str(tmp_path / "s.csv"),
        ],
        "score",
    )
    assert "holds a 10-class head but num_classes=5 was asked: pass --num-classes 10" in err


def test_images_the_transform_cannot_take_are_rows_or_one_line(capsys, tmp_path, fitted, images):
    bad = tmp_path / "bad"
    bad.mkdir()
    blob = (images / "tiny0.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(blob[: len(blob) // 2])
    (bad / "text.png").write_bytes(b"not an image at all")
    assert (
        main(
            [
                "score",
                *fitted["model_args"],
                "--detector",
                str(fitted["root"] / "det"),
                str(bad),
                "--output",
                str(tmp_path / "s.csv"),
                "--quiet",
            ]
        )
        == 1
    )  # rows written, none scored: status 1
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "none of the 2 images could be scored" in said, said
    rows = list(read_rows(tmp_path / "s.csv"))
    assert [r["predicted_class"] for r in rows] == [-1, -1] and all(r["is_out_of_distribution"] for r in rows)
    assert "text.png: not an image" in rows[0]["error"] and "truncated.jpg: cannot decode" in rows[1]["error"]
    err = one_error_line(
        capsys, ["fit", *fitted["model_args"], "--id", str(bad), "--out", str(tmp_path / "d"), "--quiet"], "fit"
    )
    assert "not an image" in err or "cannot decode" in err
