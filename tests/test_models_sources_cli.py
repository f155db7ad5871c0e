"""Every new model source, ``fit -> score -> serve -> export`` from the command line on real JPEGs
(CIFAR-10 as ID, Tiny ImageNet as OOD) and real pictures of other sizes (non-square 300x150,
302x150, 150x301, 600x457, as JPEG and PNG), with the source's own preprocessing and class names:
score's rows equal ODIN computed on the original network (exactly for a transformers folder,
within 1e-4 for an ONNX graph), the served answers equal the rows, and ONNX Runtime runs the
exported gate to the rows. Random weights (seeded) except the zoo's real ResNet-20: nothing can be
downloaded. torchvision's ViT-B/16 at 384 px (``IMAGENET1K_SWAG_E2E_V1``) is built as
torchvision's own builder builds it (equal logits, in CI); its whole chain is marked ``slow``.
Marker ``libraries`` (.ci/run's second venv, no skips)."""

from __future__ import annotations

import json

import pytest
import torch

from odin_ood import models
from odin_ood.cli import main
from odin_ood.models.huggingface import Logits
from odin_ood.preprocess import Preprocessing
from sources_support import CIFAR, TINY, check_chain, cli_chain, odin_ood_pixels, real_images, write_images

transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
torchvision = pytest.importorskip("torchvision")
pytestmark = pytest.mark.libraries

from test_models_huggingface import LABELS, save_folder  # noqa: E402 -- imports the libraries: after the importorskips
from test_models_onnx import export  # noqa: E402 -- imports the libraries: after the importorskips

SWAG = "torchvision:vit_b_16:IMAGENET1K_SWAG_E2E_V1"
GRID = ["--temperatures", "1,1000", "--epsilons", "0,0.0014"]
PAPER_GRID = ["--temperatures", "1000", "--epsilons", "0,0.0014"]  # converted graphs: see test_models_onnx


@pytest.fixture(scope="module")
def images(shared_data, tmp_path_factory):
    return write_images(real_images(shared_data), tmp_path_factory.mktemp("pictures"))


def pixels_of(det, images) -> torch.Tensor:
    """odin-ood's pixels of ``images`` with the preprocessing the detector records."""
    recorded = json.loads((det / "detector.json").read_text())["preprocessing"]
    return odin_ood_pixels(images, Preprocessing.from_dict(recorded))


@pytest.mark.parametrize(
    "name, processor",
    [
        ("vit", lambda: transformers.ViTImageProcessor()),
        ("convnext", lambda: transformers.ConvNextImageProcessor(crop_pct=0.875, size={"shortest_edge": 224})),
    ],
)
def test_a_transformers_folder_fits_scores_serves_and_exports(name, processor, shared_data, images, tmp_path):
    network = save_folder(tmp_path / name, name, processor())
    args = ["--model", f"hf:{tmp_path / name}", "--threads", "1"]
    chain = cli_chain(args, shared_data, images, tmp_path, GRID)
    recorded = json.loads((chain["det"] / "detector.json").read_text())["preprocessing"]
    assert recorded["interpolation"] in ("bilinear-antialias-torch", "bicubic-torch")
    reference = Logits(network).eval()
    check_chain(chain, reference, pixels_of(chain["det"], images), tuple(LABELS.values()))


def test_an_onnx_graph_fits_scores_serves_and_exports(shared_data, images, tmp_path):
    """torchvision's ResNet-18 (10 classes) exported with its statistics and class names in the
    file's metadata; the pictures resized as torchvision's ImageNet evaluation transform does,
    given at fit (``--resize``): the graph itself fixes only its 128x128 input."""
    torch.manual_seed(0)
    original = torchvision.models.resnet18(num_classes=10).eval()
    names = [f"kind {k}" for k in range(10)]
    path = export(
        original,
        (3, 128, 128),
        tmp_path / "r18.onnx",
        input_mean=[0.485, 0.456, 0.406],
        input_std=[0.229, 0.224, 0.225],
        class_names=names,
    )
    args = ["--model", str(path), "--threads", "1", "--resize", "resize-shorter-then-center-crop"]
    chain = cli_chain(args, shared_data, images, tmp_path, PAPER_GRID)
    check_chain(chain, original, pixels_of(chain["det"], images), tuple(names), tolerance=1e-4)


def test_an_onnx_graph_with_slice_and_pad_fits_scores_serves_and_exports(shared_data, images, tmp_path):
    """The zoo's ResNet-20 (real CIFAR-10 weights): its option-A shortcuts export as Slice and Pad,
    whose sizes onnx2torch reads from tensors as it runs; known at load, they are fixed there, so
    the gate exports. Its statistics on the command line, pictures squashed to 32x32."""
    original = models.load("resnet20", weights=shared_data / "models" / "resnet20-cifar10.th")
    path = export(original, (3, 32, 32), tmp_path / "r20.onnx")
    args = [
        "--model",
        f"onnx:{path}",
        "--threads",
        "1",
        "--input-mean",
        ",".join(map(str, original.input_mean)),
        "--input-std",
        ",".join(map(str, original.input_std)),
        "--resize",
        "squash",
        "--interpolation",
        "box",
    ]
    chain = cli_chain(args, shared_data, images, tmp_path, PAPER_GRID, limit=32)
    check_chain(chain, original, pixels_of(chain["det"], images), None, tolerance=1e-4)


class Flattening(torch.nn.Module):
    """A CNN that flattens with the batch size it is given: exported, its Reshape's shape is
    computed from the input's shape."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.Linear(4 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).relu().reshape(x.shape[0], -1))


def test_an_onnx_graph_with_sizes_from_the_input_scores_but_export_is_one_line(shared_data, tmp_path, capsys):
    torch.manual_seed(0)
    path = export(Flattening().eval(), (3, 32, 32), tmp_path / "flat.onnx")
    args = ["--model", str(path), "--threads", "1", "--resize", "squash"]
    assert (
        main(
            [
                "fit",
                *args,
                "--id",
                str(shared_data / CIFAR),
                "--ood",
                str(shared_data / TINY),
                "--limit",
                "8",
                "--out",
                str(tmp_path / "det"),
                "--quiet",
                *PAPER_GRID,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["export", "--detector", str(tmp_path / "det"), *args, "--out", str(tmp_path / "g.onnx")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("odin-ood export: error: the model's forward has data-dependent control flow")
        and err.count("\n") == 1
    )


def swag_weights(tmp_path) -> tuple[torch.nn.Module, str]:
    """A ViT-B/16 built by torchvision's own builder for the SWAG E2E weights (its state dict
    replaced by random weights where the builder would download), saved to a file."""
    weights = torchvision.models.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1
    torch.manual_seed(0)
    random_state = torchvision.models.vit_b_16(image_size=384).state_dict()
    random_state["heads.head.weight"] = 0.05 * torch.randn_like(random_state["heads.head.weight"])  # not zeros
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(weights), "get_state_dict", lambda self, *a, **k: random_state)
        built = torchvision.models.vit_b_16(weights=weights).eval()
    path = tmp_path / "swag.pth"
    torch.save(built.state_dict(), path)
    return built, str(path)


@pytest.mark.parametrize("spec", ["inception_v3:IMAGENET1K_V1", "googlenet:IMAGENET1K_V1", "maxvit_t:IMAGENET1K_V1"])
def test_weights_enums_build_the_network_as_torchvisions_builder_does(spec, tmp_path, torch_one_thread):
    name, enum = spec.split(":")
    weights = torchvision.models.get_model_weights(name)[enum]
    torch.manual_seed(0)
    state = (
        torchvision.models.get_model(name, weights=None, aux_logits=True, init_weights=True).state_dict()
        if (name != "maxvit_t")
        else torchvision.models.get_model(name).state_dict()
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(weights), "get_state_dict", lambda self, *a, **k: state)
        built = torchvision.models.get_model(name, weights=weights).eval()
    torch.save(built.state_dict(), tmp_path / "w.pth")
    model = models.load(f"torchvision:{spec}", weights=tmp_path / "w.pth")
    x = torch.rand(2, *model.input_shape)
    with torch.no_grad():
        assert torch.equal(model(x), built(x))
    assert getattr(model, "transform_input", None) == getattr(built, "transform_input", None)


def test_swag_vit_is_built_at_384_px_with_torchvisions_logits(tmp_path, torch_one_thread):
    built, path = swag_weights(tmp_path)
    model = models.load(SWAG, weights=path)
    assert model.input_shape == (3, 384, 384) and model.encoder.pos_embedding.shape[1] == 577
    assert model.class_names == tuple(torchvision.models.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1.meta["categories"])
    x = torch.rand(2, 3, 384, 384)
    with torch.no_grad():
        assert torch.equal(model(x), built(x))
    with pytest.raises(ValueError, match=r"size mismatch|pos_embedding"):
        models.load("torchvision:vit_b_16", weights=path)  # the 224-px network refuses the 384-px checkpoint


@pytest.mark.slow
def test_swag_vit_fits_scores_serves_and_exports(shared_data, images, tmp_path):
    """Minutes on two CPU cores (ViT-B/16 at 384 px): 4 images a side, T = 10, epsilon 0 and 0.002 (at
    T = 1000 the softmax of 1000 random-weight classes is uniform to float32 rounding). The exported
    gate is checked to hold the detector, not run: ONNX Runtime takes about 23 GB to run it on a CPU."""
    built, path = swag_weights(tmp_path)
    args = ["--model", SWAG, "--weights", path, "--threads", "2"]
    small = write_images({p.name: p.read_bytes() for p in sorted(images.iterdir())[:4]}, tmp_path / "four")
    chain = cli_chain(args, shared_data, small, tmp_path, ["--temperatures", "10", "--epsilons", "0,0.002"], limit=4)
    check_chain(
        chain,
        built,
        pixels_of(chain["det"], small),
        tuple(torchvision.models.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1.meta["categories"]),
        run_exported=False,
    )
