"""odin-ood's model inputs equal torchvision's and timm's own evaluation transforms on real JPEG
and PNG images (run in a venv where both import: ``-m libraries``).

The libraries' documented input is a PIL image (``Image.open(f).convert("RGB")``), decoded by the
same PIL as odin-ood's, so the tensors must be *equal*, bit for bit. torchvision's tensor path
(``torchvision.io.decode_image`` and the transform on uint8 tensors) resizes with torch's own
antialiased kernel instead of PIL's, computed in float and rounded: for bilinear it stays within
one grey level of PIL's (checked below); bicubic on tensors can differ by many more, which is why
odin-ood follows the PIL path.
"""

from __future__ import annotations

import io
import zipfile

import pytest
import torch
from PIL import Image

from odin_ood import models
from odin_ood.preprocess import Preprocessing, decode, image_tensor, of_model

tv = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")
pytestmark = [pytest.mark.libraries, pytest.mark.usefixtures("torch_one_thread")]

from odin_ood.models.library import timm_preprocessing, torchvision_preprocessing  # noqa: E402 -- imports the libraries: after the importorskips


@pytest.fixture(scope="module")
def images(shared_data) -> dict[str, bytes]:
    """Real files: Tiny ImageNet JPEGs (64x64, test_9 is greyscale), CIFAR-10 JPEGs (32x32), and
    a non-square crop of a Tiny ImageNet image saved as PNG and as JPEG (61x41: an odd margin,
    so the centre crop's rounding matters)."""
    with zipfile.ZipFile(shared_data / "tiny-imagenet" / "tiny-imagenet-200-test.zip") as z:
        blobs = {f"tiny-{k}.JPEG": z.read(f"tiny-imagenet-200/test/images/test_{k}.JPEG") for k in range(12)}
    with zipfile.ZipFile(shared_data / "cifar10" / "cifar10-jpeg-test.zip") as z:
        blobs.update({n: z.read(n) for n in sorted(n for n in z.namelist() if n.endswith(".jpg"))[:4]})
    assert Image.open(io.BytesIO(blobs["tiny-9.JPEG"])).mode == "L"
    crop = Image.open(io.BytesIO(blobs["tiny-3.JPEG"])).convert("RGB").crop((3, 0, 64, 41))
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        crop.save(buf, fmt)
        blobs[f"crop.{fmt}"] = buf.getvalue()
    return blobs


def odin_ood_input(blob: bytes, p: Preprocessing) -> torch.Tensor:
    return image_tensor(decode(blob, p), p)


def library_input(blob: bytes, transform) -> torch.Tensor:
    return transform(Image.open(io.BytesIO(blob)).convert("RGB"))


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vit_b_16", "efficientnet_b0"])
def test_torchvision_weights_transforms_equal_odin_ood_inputs(images, name):
    weights = tv.models.get_model_weights(name).DEFAULT
    p, categories = torchvision_preprocessing(tv, name)
    t = weights.transforms()
    assert (p.resize_size, p.input_shape[1:]) == (t.resize_size[0], (t.crop_size[0],) * 2)
    assert categories == weights.meta["categories"]
    for label, blob in images.items():
        assert torch.equal(odin_ood_input(blob, p), library_input(blob, t)), label


def test_a_named_torchvision_weights_enum_gives_its_own_transform(images):
    p, _ = torchvision_preprocessing(tv, "resnet50", "IMAGENET1K_V1")
    assert p.resize_size == 256 and torchvision_preprocessing(tv, "resnet50")[0].resize_size == 232  # V2
    t = tv.models.ResNet50_Weights.IMAGENET1K_V1.transforms()
    assert all(torch.equal(odin_ood_input(b, p), library_input(b, t)) for b in images.values())
    with pytest.raises(
        ValueError, match="torchvision:resnet50 has no weights 'V9'; its ResNet50_Weights has IMAGENET1K_V1"
    ):
        torchvision_preprocessing(tv, "resnet50", "V9")


@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning")
def test_torchvision_tensor_path_is_within_one_grey_level_for_bilinear(images):
    from torchvision.io import ImageReadMode, decode_image

    p, _ = torchvision_preprocessing(tv, "resnet18")
    t = tv.models.ResNet18_Weights.DEFAULT.transforms()
    std = torch.tensor(p.std).view(-1, 1, 1)
    for label, blob in images.items():
        pixels = decode_image(torch.frombuffer(bytearray(blob), dtype=torch.uint8), mode=ImageReadMode.RGB)
        grey_levels = ((odin_ood_input(blob, p) - t(pixels)) * std * 255).abs().max().item()
        assert grey_levels <= 1 + 1e-3, label


@pytest.mark.parametrize(
    "name, overlay",
    [
        ("resnet18", None),
        ("vit_tiny_patch16_224", None),
        ("resnet18", {"crop_mode": "squash"}),
        ("resnet18", {"interpolation": "bilinear", "crop_pct": 0.875}),
    ],
)
def test_timm_data_config_transform_equals_odin_ood_inputs(images, name, overlay):
    model = timm.create_model(name, pretrained=False, **({"pretrained_cfg_overlay": overlay} if overlay else {}))
    config = timm.data.resolve_data_config({}, model=model)
    p, _ = timm_preprocessing(timm, model, name)
    assert (p.resize, p.input_shape) == (
        "squash" if overlay and "crop_mode" in overlay else "resize-shorter-then-center-crop",
        tuple(config["input_size"]),
    )
    t = timm.data.create_transform(**config)
    for label, blob in images.items():
        assert torch.equal(odin_ood_input(blob, p), library_input(blob, t)), label


def test_timm_border_crop_mode_is_not_followed_but_refuses_other_sizes():
    model = timm.create_model("resnet18", pretrained=False, pretrained_cfg_overlay={"crop_mode": "border"})
    p, _ = timm_preprocessing(timm, model, "resnet18")
    assert (p.resize, p.input_shape, p.mean) == ("none", (3, 224, 224), (0.485, 0.456, 0.406))


def test_loaded_models_carry_their_transform_and_class_names(tmp_path):
    torch.save(tv.models.resnet18().state_dict(), tmp_path / "r18.pth")
    model = models.load("torchvision:resnet18", weights=tmp_path / "r18.pth")
    assert of_model(model) == torchvision_preprocessing(tv, "resnet18")[0]
    assert model.class_names == tuple(tv.models.ResNet18_Weights.DEFAULT.meta["categories"])
    torch.save(tv.models.resnet18(num_classes=10).state_dict(), tmp_path / "r18-10.pth")
    head10 = models.load("torchvision:resnet18", weights=tmp_path / "r18-10.pth", num_classes=10)
    assert head10.class_names is None and of_model(head10).resize == "resize-shorter-then-center-crop"
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    loaded = models.load("timm:vit_tiny_patch16_224", weights=tmp_path / "vit.pth")
    assert of_model(loaded) == timm_preprocessing(timm, vit, "vit_tiny_patch16_224")[0]
    assert len(loaded.class_names) == 1000 and loaded.class_names[0].startswith("tench")
