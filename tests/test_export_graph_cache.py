"""The export cache proves what it holds: a ``package.module:factory`` model whose code changed
(max-pool -> average-pool, same weights) gets a new graph, not the old one; a graph of another
detector copied onto the cache path, even with a forged key, is not used; a truncated cache file
is re-exported without a traceback; a graph that still disagrees with eager scoring after a
fresh export is refused in one line. Real MNIST/notMNIST images, the shipped LeNet's weights."""

from __future__ import annotations

import importlib
import shutil
import sys

import numpy as np
import pytest
import torch

from odin_ood import Detector, data, models
from odin_ood.cli import main
from odin_ood.commands.row_files import read_rows
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.runtimes import SCORE_TOLERANCE, load_runtime
from odin_ood.runtimes.batches import fixed_batch_outputs
from odin_ood.runtimes.eager import EagerRuntime
from serving_support import encode

pytest.importorskip("onnxscript")
pytestmark = pytest.mark.usefixtures("torch_one_thread")
BATCH = 16
GRAPH_RUNTIMES = [
    pytest.param(
        name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"{name} is not installed")
    )
    for name in ("onnxruntime", "openvino")
]

POOLED = """
import torch.nn.functional as F

from odin_ood import models
from odin_ood.models.lenet import LeNet


class Pooled(LeNet):
    def forward(self, x):
        x = F.relu(F.{pool}(self.conv1(x), 2))
        x = F.relu(F.{pool}(self.conv2(x), 2))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def make():
    base = models.load("mnist-lenet")
    model = Pooled()
    model.load_state_dict(base.state_dict())  # the same weights, so the same fingerprint
    for name in ("input_shape", "input_mean", "input_std"):
        setattr(model, name, getattr(base, name))
    return model.eval()
"""


def spec_of(model) -> Preprocessing:
    return Preprocessing(tuple(model.input_shape), mean=tuple(model.input_mean), std=tuple(model.input_std))


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    """The shipped LeNet with ODIN (T = 1000, epsilon = 0.0014) and with MSP, fitted on 200 + 200
    real images and saved; 24 digits and 24 letters as pixels and as PNG files."""
    root = tmp_path_factory.mktemp("export-cache")
    digits, letters = data.load("mnist", root=shared_data), data.load("notmnist", root=shared_data)
    model = models.load("mnist-lenet")
    spec = spec_of(model)
    fit_in, fit_out = (normalise(d.images[:200].float() / 255, spec) for d in (digits, letters))
    odin = Detector(model, temperatures=(1000.0,), epsilons=(0.0014,), batch_size=BATCH, normalise=False).fit(
        fit_in, fit_out
    )
    msp = Detector(model, score_family="msp", batch_size=BATCH, normalise=False).fit(fit_in, fit_out)
    odin.save(root / "det")
    images = np.concatenate([digits.images[7000:7024, 0].numpy(), letters.images[7000:7024, 0].numpy()])
    folder = root / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        (folder / f"{i:02d}.png").write_bytes(encode(image))
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255)
    return {"root": root, "folder": folder, "odin": odin, "msp": msp, "spec": spec, "x": x}


def assert_agree(got: list[dict], want: list[dict]) -> None:
    """Rows of one runtime against eager torch's: the same classes, scores within the bound,
    the same decision wherever the eager score is not within the bound of the threshold."""
    assert [g["source"] for g in got] == [w["source"] for w in want]
    assert [g["predicted_class"] for g in got] == [w["predicted_class"] for w in want]
    assert max(abs(g["score"] - w["score"]) for g, w in zip(got, want, strict=True)) <= SCORE_TOLERANCE
    assert [g["is_out_of_distribution"] for g in got] == [w["is_out_of_distribution"] for w in want]


def score(setup, out, model, runtime):
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
                model,
                "--runtime",
                runtime,
                "--threads",
                "1",
                "--quiet",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    return list(read_rows(out))


def test_a_factory_model_whose_code_changed_gets_a_new_graph_not_the_cached_one(setup, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("ODIN_OOD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # the module is rewritten in place
    monkeypatch.syspath_prepend(str(tmp_path))
    source = tmp_path / "odin_pooled_lenet.py"
    rows = {}
    for pool in ("max_pool2d", "avg_pool2d"):  # two runs: the user edited the model's code in between
        source.write_text(POOLED.format(pool=pool))
        monkeypatch.delitem(sys.modules, "odin_pooled_lenet", raising=False)
        importlib.invalidate_caches()
        for runtime in ("torch", "onnxruntime"):
            rows[pool, runtime] = score(setup, tmp_path / f"{pool}-{runtime}.csv", "odin_pooled_lenet:make", runtime)
    assert_agree(rows["max_pool2d", "onnxruntime"], rows["max_pool2d", "torch"])
    assert_agree(rows["avg_pool2d", "onnxruntime"], rows["avg_pool2d", "torch"])
    # the change matters: average pooling changes decisions (the old graph would have kept them)
    changed = sum(
        a["is_out_of_distribution"] != m["is_out_of_distribution"] or a["predicted_class"] != m["predicted_class"]
        for a, m in zip(rows["avg_pool2d", "torch"], rows["max_pool2d", "torch"], strict=True)
    )
    assert changed >= 3
    assert len(list((tmp_path / "cache" / "export").glob("*.onnx"))) == 2  # one graph per computation


def graph_outputs(setup, detector, name, cache):
    return fixed_batch_outputs(load_runtime(name, detector, setup["spec"], threads=1, cache_dir=cache), setup["x"])


def assert_gate_equal(got: dict, want: dict) -> None:
    assert torch.equal(got["predicted_class"], want["predicted_class"])
    assert (got["score"].double() - want["score"].double()).abs().max().item() <= SCORE_TOLERANCE
    assert torch.equal(got["is_out_of_distribution"], want["is_out_of_distribution"])


def cache_path(setup, detector, cache):
    from odin_ood.export.graph import export_key

    return cache / f"{export_key(detector, setup['spec'], None)}.onnx"


@pytest.mark.parametrize("name", GRAPH_RUNTIMES)
def test_a_graph_of_another_detector_copied_onto_the_cache_path_is_not_used(setup, tmp_path, name):
    odin, msp = setup["odin"], setup["msp"]
    graph_outputs(setup, odin, name, tmp_path)  # exports ODIN's graph
    shutil.copyfile(cache_path(setup, odin, tmp_path), cache_path(setup, msp, tmp_path))
    want = fixed_batch_outputs(EagerRuntime(msp, setup["spec"]), setup["x"])
    odin_eager = fixed_batch_outputs(EagerRuntime(odin, setup["spec"]), setup["x"])
    assert not torch.equal(want["is_out_of_distribution"], odin_eager["is_out_of_distribution"])  # they differ
    assert_gate_equal(graph_outputs(setup, msp, name, tmp_path), want)


def test_a_foreign_graph_with_a_forged_key_fails_the_probe_and_is_re_exported(setup, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx

    odin, msp = setup["odin"], setup["msp"]
    graph_outputs(setup, msp, "onnxruntime", tmp_path)
    real = cache_path(setup, msp, tmp_path)
    key = onnx.load(str(real)).metadata_props
    key = {p.key: p.value for p in key}["odin_ood.cache_key"]
    graph_outputs(setup, odin, "onnxruntime", tmp_path)
    forged = onnx.load(str(cache_path(setup, odin, tmp_path)))  # ODIN's graph, claiming to be MSP's
    for p in forged.metadata_props:
        if p.key == "odin_ood.cache_key":
            p.value = key
    onnx.save(forged, str(real))
    want = fixed_batch_outputs(EagerRuntime(msp, setup["spec"]), setup["x"])
    with pytest.warns(UserWarning, match="disagrees with eager scoring .* re-exporting"):
        got = graph_outputs(setup, msp, "onnxruntime", tmp_path)
    assert_gate_equal(got, want)


@pytest.mark.parametrize("name", GRAPH_RUNTIMES)
def test_a_truncated_cache_file_is_re_exported_without_a_traceback(setup, tmp_path, name):
    odin = setup["odin"]
    graph_outputs(setup, odin, name, tmp_path)
    path = cache_path(setup, odin, tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    got = graph_outputs(setup, odin, name, tmp_path)
    assert_gate_equal(got, fixed_batch_outputs(EagerRuntime(odin, setup["spec"]), setup["x"]))
    assert len(path.read_bytes()) == len(whole)


def test_a_graph_that_disagrees_after_a_fresh_export_is_refused_in_one_line(setup, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    from odin_ood.export import graph
    from odin_ood.runtimes.onnx import OnnxRuntime

    real_run, real_export = OnnxRuntime._run, graph.export_onnx
    exports = []

    def off_by_a_little(self, pixels):  # a runtime that computes scores 1e-3 too high
        out = real_run(self, pixels)
        out[2] = out[2] + np.float32(1e-3)
        return out

    def counted(*args, **kwargs):
        exports.append(1)
        return real_export(*args, **kwargs)

    monkeypatch.setattr(OnnxRuntime, "_run", off_by_a_little)
    monkeypatch.setattr(graph, "export_onnx", counted)
    monkeypatch.setenv("ODIN_OOD_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "s.csv"
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
                "mnist-lenet",
                "--runtime",
                "onnxruntime",
                "--threads",
                "1",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disagrees with eager scoring" in err[0] and "--runtime torch" in err[0], err
    assert len(exports) == 2  # the first export, then one fresh export: never a loop
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # nothing scored, nothing written


def test_agreement_rule_on_a_hand_worked_batch():
    """Scores within SCORE_TOLERANCE agree; a decision may differ only where the eager score lies
    within SCORE_TOLERANCE of the threshold; a class only where the eager probabilities of both
    classes are within SCORE_TOLERANCE of each other."""
    from odin_ood.runtimes.probe import disagreement

    t, tol = 0.5, SCORE_TOLERANCE

    def gate(classes, scores):
        s = torch.tensor(scores, dtype=torch.float32)
        return {"predicted_class": torch.tensor(classes), "score": s, "is_out_of_distribution": ~(s > t)}

    probs = torch.tensor([[0.7, 0.3], [0.5, 0.5 - tol / 2], [0.9, 0.1]])
    eager = gate([0, 0, 0], [0.8, t + tol / 2, 0.3])
    assert disagreement(gate([0, 0, 0], [0.8 + tol / 2, t - tol / 4, 0.3]), eager, t, probs) is None
    assert disagreement(gate([0, 1, 0], [0.8, t + tol / 2, 0.3]), eager, t, probs) is None  # a near tie
    assert "class" in disagreement(gate([1, 0, 0], [0.8, t + tol / 2, 0.3]), eager, t, probs)
    assert "score" in disagreement(gate([0, 0, 0], [0.8 + 3 * tol, t + tol / 2, 0.3]), eager, t, probs)
    flipped = gate([0, 0, 0], [0.8, t + tol / 2, 0.3])
    flipped["is_out_of_distribution"][0] = True  # a decision flipped far from the threshold
    assert "decision" in disagreement(flipped, eager, t, probs)
    nan = gate([0, 0, 0], [float("nan"), t + tol / 2, 0.3])
    assert "score" in disagreement(nan, eager, t, probs)  # NaN where eager is finite
    assert disagreement(nan, gate([0, 0, 0], [float("nan"), t + tol / 2, 0.3]), t, probs) is None  # NaN on both
