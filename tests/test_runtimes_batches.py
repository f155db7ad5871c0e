"""The exported gate takes any batch size: one graph with a dynamic batch dimension, whose outputs
at every batch size keep :data:`odin_ood.runtimes.SCORE_TOLERANCE` against eager scoring (the
gate runs micro-batches at their natural size on it), checked by the probe at a small batch too;
a model whose code fixes the batch size gets a graph of that one size, with a warning. Real
MNIST and notMNIST images, the shipped LeNet (ODIN at T = 1000, epsilon = 0.0014)."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import torch

from export_support import fixed_batch
from odin_ood import Detector, data, models
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.runtimes import load_runtime
from odin_ood.runtimes.batches import fixed_batch_outputs
from odin_ood.runtimes.eager import EagerRuntime
from runtime_support import assert_within_tolerance

pytest.importorskip("onnxscript")
pytestmark = pytest.mark.usefixtures("torch_one_thread")
BATCH = 16
GRAPH_RUNTIMES = [
    pytest.param(
        name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"{name} is not installed")
    )
    for name in ("onnxruntime", "openvino")
]


def spec_of(model) -> Preprocessing:
    return Preprocessing(tuple(model.input_shape), mean=tuple(model.input_mean), std=tuple(model.input_std))


@pytest.fixture(scope="module")
def lenet(shared_data, tmp_path_factory):
    """ODIN for the shipped LeNet fitted on 200 + 200 real images; 40 other images (half digits,
    half letters) as pixels; an export cache shared by the module."""
    digits, letters = data.load("mnist", root=shared_data), data.load("notmnist", root=shared_data)
    model = models.load("mnist-lenet")
    spec = spec_of(model)
    det = Detector(model, temperatures=(1000.0,), epsilons=(0.0014,), batch_size=BATCH, normalise=False)
    det.fit(*(normalise(d.images[:200].float() / 255, spec) for d in (digits, letters)))
    x = torch.cat([digits.images[5000:5020], letters.images[5000:5020]]).float() / 255
    return det, x, tmp_path_factory.mktemp("batch-cache")


@pytest.mark.parametrize("name", GRAPH_RUNTIMES)
def test_the_graph_takes_any_batch_size_within_the_tolerance_of_eager_scoring(lenet, name):
    import onnx

    det, x, cache = lenet
    spec = spec_of(det.model)
    runtime = load_runtime(name, det, spec, threads=1, cache_dir=cache)
    assert not runtime.fixed_batch and not runtime.exact
    dim = onnx.load(str(runtime.path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "batch" and dim.dim_value == 0  # one graph, any batch
    for n in (1, 5, BATCH, BATCH + 7, len(x)):  # below, at and above the detector's batch size
        want = EagerRuntime(det, spec).outputs(x[:n])
        got = runtime.outputs(x[:n])
        assert len(got["score"]) == n
        assert_within_tolerance(got, want, det, x[:n], spec)
    assert len(list(cache.glob("odin-gate-dynamic-*.onnx"))) == 1 and len(list(cache.glob("*.onnx"))) == 1


def test_a_model_that_fixes_its_batch_size_gets_a_graph_of_that_size_with_a_warning(lenet, tmp_path):
    pytest.importorskip("onnxruntime")
    det, x, _ = lenet
    spec = spec_of(det.model)
    fixed = Detector.from_dict(det.to_dict(), fixed_batch())  # the same weights: the file loads
    fixed.normalise = False
    with pytest.warns(
        UserWarning,
        match=rf"takes batches of exactly {BATCH} images: .*fixes the batch size \(the "
        r"graph's 'pixels' has batch size 2\)",
    ):
        runtime = load_runtime("onnxruntime", fixed, spec, threads=1, cache_dir=tmp_path)
    assert runtime.fixed_batch
    assert [p.name.split("-")[2] for p in tmp_path.glob("*.onnx")] == [f"b{BATCH}"]
    with pytest.raises(ValueError, match=f"takes batches of a multiple of {BATCH} rows, got 5"):
        runtime.outputs(x[:5])
    want = fixed_batch_outputs(EagerRuntime(fixed, spec), x[:21])
    assert_within_tolerance(fixed_batch_outputs(runtime, x[:21]), want, fixed, x[:21], spec)  # padded to 32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cached graph of that size is used as it is: no second trace
        assert load_runtime("onnxruntime", fixed, spec, threads=1, cache_dir=tmp_path).path == runtime.path


def test_a_graph_wrong_only_at_small_batches_fails_the_probe(lenet, tmp_path, monkeypatch):
    """The probe runs the graph at the detector's batch size and at a batch of 3: a runtime that
    scores correctly only in full batches (what ``score`` runs) is refused before it serves."""
    pytest.importorskip("onnxruntime")
    from odin_ood.runtimes.onnx import OnnxRuntime

    det, _, _ = lenet
    real_run = OnnxRuntime._run

    def wrong_when_small(self, pixels):
        out = real_run(self, pixels)
        if len(pixels) < BATCH:
            out[2] = out[2] + np.float32(1e-3)
        return out

    monkeypatch.setattr(OnnxRuntime, "_run", wrong_when_small)
    with (
        pytest.warns(UserWarning, match="disagrees with eager scoring"),
        pytest.raises(ValueError, match=r"in a batch of 3: image 0: score .* beyond 1e-05"),
    ):
        load_runtime("onnxruntime", det, spec_of(det.model), threads=1, cache_dir=tmp_path)


@pytest.mark.parametrize("name", GRAPH_RUNTIMES)
def test_the_export_command_writes_the_graph_of_any_batch(lenet, tmp_path, monkeypatch, capsys, name):
    """``odin-ood export``'s file runs any batch size on the runtime (ONNX Runtime's session and
    OpenVINO's compiled model of the file itself, not odin-ood's runtime classes)."""
    from odin_ood.cli import main

    det, x, _ = lenet
    det.save(tmp_path / "det")
    monkeypatch.setenv("ODIN_OOD_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "gate.onnx"
    assert (
        main(
            [
                "export",
                "--detector",
                str(tmp_path / "det"),
                "--model",
                "mnist-lenet",
                "--out",
                str(out),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert "(any batch, input [1, 28, 28]" in capsys.readouterr().err
    spec = spec_of(det.model)
    for n in (1, 7):
        pixels = x[:n].numpy()
        if name == "onnxruntime":
            import onnxruntime as ort

            score = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
                ["score"], {"pixels": pixels}
            )[0]
        else:
            import openvino as ov

            compiled = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            score = compiled.create_infer_request().infer({0: pixels})[compiled.output("score")]
        want = EagerRuntime(det, spec).outputs(x[:n])["score"].numpy()
        assert score.shape == (n,) and np.abs(score - want).max() <= 1e-5
