"""``hf:PATH``: a Hugging Face transformers folder (random weights written by ``save_pretrained``
beside a real image processor config: no pretrained file can be had offline) loads as a classifier
returning the transformers model's own logits, with ``id2label`` as class names, and odin-ood's
input equals ``AutoImageProcessor.from_pretrained(PATH)(images)["pixel_values"]`` on real JPEG
and PNG pictures: the resized and cropped pixels bit for bit, the normalised values to float32
rounding (1e-6). A processor odin-ood cannot follow is one error naming the field. Marker
``libraries`` (run where transformers imports beside torchvision, as .ci/run's second venv)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from odin_ood import models
from odin_ood.cli import main
from odin_ood.preprocess import decode, image_pixels, normalise, of_model
from sources_support import real_images

transformers = pytest.importorskip("transformers")
pytestmark = [pytest.mark.libraries, pytest.mark.usefixtures("torch_one_thread")]

from odin_ood.models.huggingface import Logits, processor_preprocessing  # noqa: E402 -- imports transformers: after the importorskip

LABELS = {
    i: name
    for i, name in enumerate(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
}
# name -> (the processor saved with the model, its resize); the ConvNeXt at 288 crops 288 of int(288 / 0.95) = 303
PROCESSORS = {
    "vit": (lambda: transformers.ViTImageProcessor(), "squash"),
    "convnext-384": (
        lambda: transformers.ConvNextImageProcessor(crop_pct=0.875, size={"shortest_edge": 384}),
        "squash",
    ),
    "convnext-224": (
        lambda: transformers.ConvNextImageProcessor(crop_pct=0.875, size={"shortest_edge": 224}),
        "resize-shorter-then-center-crop-floor",
    ),
    "convnext-288": (
        lambda: transformers.ConvNextImageProcessor(crop_pct=0.95, size={"shortest_edge": 288}),
        "resize-shorter-then-center-crop-floor",
    ),
    "deit": (
        lambda: transformers.DeiTImageProcessor(
            size={"height": 256, "width": 256}, crop_size={"height": 224, "width": 224}
        ),
        "squash",
    ),
    "bit": (
        lambda: transformers.BitImageProcessor(
            size={"shortest_edge": 256},
            crop_size={"height": 224, "width": 224},
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ),
        "resize-shorter-then-center-crop-floor",
    ),
}


def tiny_network(kind: str, image_size: int = 224) -> torch.nn.Module:
    """A small transformers ViT or ConvNeXt for 10 classes, random weights (seeded)."""
    torch.manual_seed(0)
    common = {"num_labels": 10, "id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
    if kind == "vit":
        config = transformers.ViTConfig(
            image_size=image_size,
            patch_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            **common,
        )
        return transformers.ViTForImageClassification(config).eval()
    config = transformers.ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], **common)
    return transformers.ConvNextForImageClassification(config).eval()


def save_folder(folder, kind: str, processor) -> torch.nn.Module:
    network = tiny_network(kind)
    network.save_pretrained(folder)
    processor.save_pretrained(folder)
    return network


@pytest.fixture(scope="module")
def blobs(shared_data) -> dict[str, bytes]:
    return real_images(shared_data)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for name, (make, _) in PROCESSORS.items():
        kind = "vit" if name in ("vit", "deit") else "convnext"
        out[name] = (root / name, save_folder(root / name, kind, make()))
    return out


def transformers_pixels(processor, blob: bytes, **kwargs) -> torch.Tensor:
    return processor(Image.open(io.BytesIO(blob)), return_tensors="pt", **kwargs)["pixel_values"][0]


@pytest.mark.parametrize("name", list(PROCESSORS))
def test_inputs_equal_the_auto_image_processors_pixel_values(folders, blobs, name):
    folder, _ = folders[name]
    processor = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    assert processor.backend == "torchvision"  # transformers 5's default where torchvision imports: its "fast" one
    spec = of_model(models.load(f"hf:{folder}"))
    assert spec.resize == PROCESSORS[name][1] and spec.interpolation.endswith("-torch")
    worst = 0.0
    for label, blob in blobs.items():
        pixels = image_pixels(decode(blob, spec), spec)
        raw = transformers_pixels(processor, blob, do_rescale=False, do_normalize=False)  # uint8, resized and cropped
        assert raw.dtype == torch.uint8 and torch.equal((pixels * 255).round().to(torch.uint8), raw), label
        want = transformers_pixels(processor, blob)
        worst = max(worst, (normalise(pixels, spec) - want).abs().max().item())
    assert worst <= 1e-6  # float32 rounding: (255 p - 255 m) / (255 s) against (p - m) / s


@pytest.mark.parametrize("method, mode", [("bilinear-antialias-torch", "BILINEAR"), ("bicubic-torch", "BICUBIC")])
def test_torch_filters_equal_torchvisions_resize_of_uint8_tensors(blobs, method, mode):
    """odin-ood's torch filters are torchvision's ``resize`` of a uint8 image tensor (antialiased),
    up (32 and 64 px to 224) and down (600x457 to 97x61) alike."""
    from torchvision.transforms.v2 import functional as tvF

    from odin_ood.preprocess.resampling import resample

    for label, blob in blobs.items():
        image = Image.open(io.BytesIO(blob)).convert("RGB")
        for size in ((224, 224), (97, 61), (image.width + 3, image.height)):
            ours = torch.from_numpy(np.asarray(resample(image, size, method))).permute(2, 0, 1)
            tensor = torch.from_numpy(np.asarray(image)).permute(2, 0, 1).contiguous()
            want = tvF.resize(
                tensor, [size[1], size[0]], interpolation=getattr(tvF.InterpolationMode, mode), antialias=True
            )
            assert torch.equal(ours, want), (label, size)


def test_the_odd_margin_is_cropped_as_transformers_rounds_it_down(folders, blobs):
    spec = of_model(models.load(f"hf:{folders['convnext-224'][0]}"))
    assert spec.resized_size((302, 150)) == (515, 256)  # margin 291: offset 145 down, 146 to even
    processor = transformers.AutoImageProcessor.from_pretrained(folders["convnext-224"][0])
    even = spec.__class__(spec.input_shape, "resize-shorter-then-center-crop", spec.interpolation, spec.resize_size)
    blob = blobs["wide-302x150.png"]
    raw = transformers_pixels(processor, blob, do_rescale=False, do_normalize=False).float() / 255
    assert torch.equal(image_pixels(decode(blob, spec), spec), raw)
    assert not torch.equal(image_pixels(decode(blob, even), even), raw)


@pytest.mark.parametrize("name", ["vit", "convnext-224"])
def test_the_pil_backend_is_followed_exactly_and_differs_from_the_default_by_a_few_grey_levels(folders, blobs, name):
    """The PIL processor (what AutoImageProcessor returns without torchvision) resizes with PIL:
    odin-ood follows it too when given, bit for bit; the default (torchvision) one's input is
    within 2 grey levels of it on these pictures (torch's antialiased kernel against PIL's)."""
    fast = transformers.AutoImageProcessor.from_pretrained(folders[name][0])
    pil_class = getattr(transformers, type(fast).__name__ + "Pil")
    slow = pil_class.from_pretrained(folders[name][0])
    assert slow.backend == "pil"
    spec_slow, spec_fast = processor_preprocessing(slow), processor_preprocessing(fast)
    assert spec_slow.interpolation == {"vit": "bilinear-antialias", "convnext-224": "bicubic"}[name]
    worst = 0
    for label, blob in blobs.items():
        raw = transformers_pixels(slow, blob, do_rescale=False, do_normalize=False)
        ours = (image_pixels(decode(blob, spec_slow), spec_slow) * 255).round()
        assert torch.equal(ours, raw.float()), label
        fast_pixels = (image_pixels(decode(blob, spec_fast), spec_fast) * 255).round()
        worst = max(worst, int((fast_pixels - ours).abs().max()))
    assert 1 <= worst <= 2


@pytest.mark.parametrize("name", ["vit", "convnext-384"])
def test_loaded_model_gives_the_transformers_logits_and_id2label(folders, name):
    folder, network = folders[name]
    model = models.load(f"hf:{folder}")
    assert model.class_names == tuple(LABELS.values()) and model.num_classes == 10
    assert model.input_shape == (3, 384, 384) if name == "convnext-384" else (3, 224, 224)
    x = torch.randn(2, *model.input_shape)
    with torch.no_grad():
        assert torch.equal(model(x), network(pixel_values=x).logits)
    assert isinstance(model, Logits)


@pytest.mark.parametrize(
    "processor, field",
    [
        (lambda: transformers.ViTImageProcessor(size={"shortest_edge": 224}), "without do_center_crop"),
        (lambda: transformers.ViTImageProcessor(resample=0), "resample 0"),
        (lambda: transformers.ViTImageProcessor(do_resize=False), "do_resize"),
        (lambda: transformers.ViTImageProcessor(size={"shortest_edge": 224, "longest_edge": 300}), "size {"),
        (
            lambda: transformers.BitImageProcessor(
                size={"shortest_edge": 200}, crop_size={"height": 224, "width": 224}
            ),
            "crop_size {'height': 224, 'width': 224} is larger than the resized shorter side 200",
        ),
        (
            lambda: transformers.DeiTImageProcessor(
                size={"height": 256, "width": 256}, crop_size={"height": 221, "width": 221}
            ),
            "crop_size height 221",
        ),
        (lambda: transformers.LevitImageProcessor(), "LevitImageProcessor transforms images its own way (resize)"),
        (
            lambda: transformers.ConvNextImageProcessor(do_center_crop=True, crop_size={"height": 200, "width": 200}),
            "do_center_crop=True crops a second time",
        ),
    ],
)
def test_a_processor_odin_ood_cannot_follow_is_one_error_naming_the_field(processor, field):
    with pytest.raises(ValueError, match=r"^the image processor: ") as info:
        processor_preprocessing(processor())
    assert field in str(info.value) and "\n" not in str(info.value)


def test_an_unfollowed_folder_or_a_missing_one_is_one_line_at_the_command_line(capsys, tmp_path, shared_data):
    save_folder(tmp_path / "levit", "vit", transformers.LevitImageProcessor())
    (tmp_path / "empty").mkdir()
    capsys.readouterr()  # save_pretrained's progress bar
    for folder, message in (
        (tmp_path / "levit", "LevitImageProcessor transforms images its own way"),
        (tmp_path / "empty", "the folder has no config.json"),
        (tmp_path / "absent", "is not a folder"),
    ):
        assert (
            main(
                [
                    "fit",
                    "--model",
                    f"hf:{folder}",
                    "--id",
                    "mnist",
                    "--out",
                    str(tmp_path / "d"),
                    "--data-root",
                    str(shared_data),
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert err.startswith("odin-ood fit: error: ") and err.count("\n") == 1 and message in err, err


def test_rescale_and_normalise_become_the_mean_and_std_of_unit_pixels():
    """(255 r p - m) / s with r = 1 (no rescale, a model trained on 0..255 inputs): mean m / 255,
    std s / 255; no normalisation and r = 1/255: no mean and std at all."""
    spec = processor_preprocessing(
        transformers.ViTImageProcessor(do_rescale=False, image_mean=[127.5] * 3, image_std=[63.75] * 3)
    )
    assert spec.mean == pytest.approx((0.5,) * 3, abs=1e-15) and spec.std == pytest.approx((0.25,) * 3, abs=1e-15)
    assert processor_preprocessing(transformers.ViTImageProcessor(do_normalize=False)).mean is None
