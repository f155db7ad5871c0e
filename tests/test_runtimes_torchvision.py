"""The exported gate of a torchvision CNN (ResNet-18) and a timm ViT gives eager torch's outputs
within :data:`odin_ood.runtimes.SCORE_TOLERANCE` (as it states them) on real CIFAR-10 and
TinyImageNet (crop) images, on ONNX Runtime and OpenVINO. Runs where torchvision
and timm import (the /work/tvenv environment); the networks are built with random weights (no
downloads), which changes nothing in what is compared: the same function on two runtimes."""

from __future__ import annotations

import pytest
import torch

from odin_ood import Detector, data
from odin_ood.models.zoo import IMAGENET_MEAN, IMAGENET_STD
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.runtimes import load_runtime
from odin_ood.runtimes.batches import fixed_batch_outputs
from odin_ood.runtimes.eager import EagerRuntime
from runtime_support import assert_within_tolerance

pytestmark = [pytest.mark.usefixtures("torch_one_thread"), pytest.mark.libraries]
SPEC = Preprocessing((3, 32, 32), mean=IMAGENET_MEAN, std=IMAGENET_STD)


def resnet18() -> torch.nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def vit() -> torch.nn.Module:
    pytest.importorskip("timm")
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)  # timm's ViT (patch embedding, attention through scaled_dot_product_attention), small
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=10)


@pytest.fixture(scope="module")
def images(shared_data):
    cifar = data.load("cifar10-lossless-1000", root=shared_data).images.float() / 255.0
    crop = data.load("tinyimagenet-crop", root=shared_data).images.float() / 255.0
    return cifar, crop


@pytest.mark.parametrize("build", [resnet18, vit])
def test_exported_gate_of_a_torchvision_cnn_and_a_timm_vit_equals_eager(build, images, tmp_path):
    pytest.importorskip("onnxscript")
    model = build().eval()
    cifar, crop = images
    det = Detector(
        model,
        input_std=SPEC.std,
        input_mean=SPEC.mean,
        temperatures=(10.0,),
        epsilons=(0.0014,),
        batch_size=16,
        normalise=False,
    )
    det.fit(normalise(cifar[:64], SPEC), normalise(crop[:64], SPEC))
    x = torch.cat([cifar[500:540], crop[500:540]])
    want = fixed_batch_outputs(EagerRuntime(det, SPEC), x)
    for name in ("onnxruntime", "openvino"):
        pytest.importorskip(name)
        got = fixed_batch_outputs(load_runtime(name, det, SPEC, threads=1, cache_dir=tmp_path), x)
        assert_within_tolerance(got, want, det, x, SPEC)
