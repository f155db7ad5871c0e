"""``onnx:PATH`` / ``*.onnx``: a classifier exported to ONNX, converted to a differentiable module
(onnx2torch), gives ODIN scores within 1e-4 of ``odin_scores`` on the original network: the zoo's
ResNet-20 with its real CIFAR-10 weights and torchvision's ResNet-18 / timm's ViT-Tiny (random
weights, seeded) exported with ``torch.onnx``, and a Keras network exported with tf2onnx against
ODIN computed by TensorFlow itself; on real CIFAR-10 and Tiny ImageNet images. The input size comes
from the graph, mean/std/class names from the file's metadata or the command line; an operator
onnx2torch cannot convert is one line naming it. Marker ``libraries`` (.ci/run's second venv)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from odin_ood import data, models, odin_scores
from odin_ood.cli import main
from odin_ood.preprocess import Preprocessing, normalise

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx2torch")
pytestmark = [pytest.mark.libraries, pytest.mark.usefixtures("torch_one_thread")]
PAPER = (1000.0, 0.0014)  # the paper's CIFAR-10 parameters (T, epsilon)


def export(model: nn.Module, shape: tuple[int, ...], path, **metadata) -> str:
    """``model`` exported with torch.onnx at opset 17 (onnx2torch's newest) with a dynamic batch,
    ``metadata`` added as JSON ``metadata_props``."""
    torch.onnx.export(
        model,
        (torch.zeros(2, *shape),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        dynamic_axes={"x": {0: "batch"}},
    )
    if metadata:
        proto = onnx.load(str(path))
        onnx.helper.set_model_props(proto, {k: json.dumps(v) for k, v in metadata.items()})
        onnx.save(proto, str(path))
    return str(path)


@pytest.fixture(scope="module")
def cifar_and_tiny(shared_data) -> torch.Tensor:
    """64 real CIFAR-10 test images and 64 Tiny ImageNet (crop) images, [0, 1] pixels."""
    cifar = data.load("cifar10-lossless-1000", root=shared_data).images[:64].float() / 255
    tiny = data.load("tinyimagenet-crop", root=shared_data).images[:64].float() / 255
    return torch.cat([cifar, tiny])


def resnet20(shared_data) -> nn.Module:
    return models.load("resnet20", weights=shared_data / "models" / "resnet20-cifar10.th")


def test_a_zoo_cnn_with_metadata_scores_within_1e4_of_the_original(shared_data, cifar_and_tiny, tmp_path):
    original = resnet20(shared_data)
    names = [f"class {k}" for k in range(10)]
    path = export(
        original,
        (3, 32, 32),
        tmp_path / "r20.onnx",
        input_mean=list(original.input_mean),
        input_std=list(original.input_std),
        class_names=names,
    )
    converted = models.load(path)
    assert (converted.input_shape, converted.input_mean, converted.input_std) == (
        (3, 32, 32),
        original.input_mean,
        original.input_std,
    )
    assert converted.class_names == tuple(names) and converted.num_classes == 10
    x = normalise(cifar_and_tiny, Preprocessing((3, 32, 32), mean=original.input_mean, std=original.input_std))
    for temperature, epsilon in (PAPER, (1.0, 0.0)):
        want = odin_scores(original, x, temperature, epsilon, input_std=original.input_std, normalise=False)
        got = odin_scores(converted, x, temperature, epsilon, input_std=converted.input_std, normalise=False)
        assert (got - want).abs().max().item() <= 1e-4, (temperature, epsilon)
    assert all(p.requires_grad for p in converted.parameters()) or not list(converted.parameters())


@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_a_library_network_with_the_size_on_the_command_line_scores_within_1e4(library, cifar_and_tiny, tmp_path):
    torch.manual_seed(0)
    if library == "torchvision":
        original, shape = pytest.importorskip("torchvision").models.resnet18(num_classes=10).eval(), (3, 64, 64)
    else:
        original, shape = (
            pytest.importorskip("timm").create_model("vit_tiny_patch16_224", num_classes=10).eval(),
            (3, 224, 224),
        )
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    path = export(original, shape, tmp_path / "net.onnx")
    converted = models.load(f"onnx:{path}", input_mean=mean, input_std=std)
    assert converted.input_shape == shape and getattr(converted, "class_names", None) is None
    pixels = nn.functional.interpolate(cifar_and_tiny[::4], size=shape[1:], mode="bilinear")
    x = normalise(pixels, Preprocessing(shape, mean=mean, std=std))
    want = odin_scores(original, x, *PAPER, input_std=std, normalise=False)
    assert (odin_scores(converted, x, *PAPER, input_std=std, normalise=False) - want).abs().max().item() <= 1e-4


KERAS = textwrap.dedent("""
    import sys, numpy as np, tensorflow as tf, keras, tf2onnx
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(16, 3, activation="relu"),
                            keras.layers.MaxPooling2D(), keras.layers.Conv2D(32, 3, activation="relu"),
                            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    spec = (tf.TensorSpec((None, 32, 32, 3), tf.float32, name="x"),)
    tf2onnx.convert.from_function(tf.function(lambda x: net(x)), input_signature=spec, opset=17,
                                  inputs_as_nchw=["x"], output_path=sys.argv[1])
    x = tf.constant(np.load(sys.argv[2]).transpose(0, 2, 3, 1))  # NCHW -> NHWC
    T, eps = float(sys.argv[4]), float(sys.argv[5])
    with tf.GradientTape() as tape:  # ODIN (paper eq. 2) computed by TensorFlow
        tape.watch(x)
        loss = -tf.reduce_sum(tf.reduce_max(tf.nn.log_softmax(net(x) / T), axis=1))
    x_tilde = x - eps * tf.sign(tape.gradient(loss, x))
    np.save(sys.argv[3], tf.reduce_max(tf.nn.softmax(net(x_tilde) / T), axis=1).numpy())
""")


def test_a_keras_network_through_tf2onnx_scores_within_1e4_of_odin_in_tensorflow(cifar_and_tiny, tmp_path):
    """TensorFlow runs in its own process (it and torch in one process fight over threads)."""
    for package in ("tensorflow", "tf2onnx"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed (requirements-libraries.txt installs it)")
    pixels = cifar_and_tiny.numpy()
    np.save(tmp_path / "x.npy", pixels)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            KERAS,
            str(tmp_path / "k.onnx"),
            str(tmp_path / "x.npy"),
            str(tmp_path / "s.npy"),
            *map(str, PAPER),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    converted = models.load(tmp_path / "k.onnx")
    assert converted.input_shape == (3, 32, 32) and converted.input_std is None  # Keras saw [0, 1] pixels
    got = odin_scores(converted, cifar_and_tiny, *PAPER)
    assert (got - torch.from_numpy(np.load(tmp_path / "s.npy"))).abs().max().item() <= 1e-4


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).relu().mean((2, 3)))


def test_an_operator_onnx2torch_cannot_convert_is_one_line_naming_it(capsys, tmp_path, shared_data):
    """torch.onnx's default (dynamo) exporter writes opset 18+, whose ReduceMean onnx2torch 1.5.15 lacks."""
    path = tmp_path / "small.onnx"
    torch.onnx.export(Small().eval(), (torch.zeros(2, 3, 32, 32),), str(path), dynamo=True, verbose=False)
    capsys.readouterr()
    assert (
        main(
            [
                "fit",
                "--model",
                str(path),
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
    assert err.startswith("odin-ood fit: error: ") and err.count("\n") == 1, err
    assert "onnx2torch 1.5.15 cannot convert operator(s) ReduceMean (opset" in err and "opset 17 or lower" in err


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b"not a protobuf at all"), "not an ONNX model onnx can read"),
        (
            lambda p: onnx.save(_with_props(onnx.load(str(p)), input_std='"wide"'), str(p)),
            "metadata input_std must be a JSON list of numbers",
        ),
    ],
)
def test_a_broken_file_or_bad_metadata_is_one_error(damage, message, tmp_path):
    path = tmp_path / "m.onnx"
    export(Small().eval(), (3, 32, 32), path)
    damage(path)
    with pytest.raises(ValueError, match=message):
        models.load(path)
    with pytest.raises(ValueError, match="carries its own weights"):
        models.load(f"onnx:{path}", weights=path)


def _with_props(proto, **props):
    onnx.helper.set_model_props(proto, props)
    return proto
