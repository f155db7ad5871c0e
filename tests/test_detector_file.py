"""A detector file is untrusted input: every field is checked against the range where ODIN's
maths stays finite, and the decision fails closed when a score is not finite anyway."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from odin_ood import Detector, models

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def mlp():
    return models.load("mnist-mlp")


@pytest.fixture(scope="module")
def valid(mlp) -> dict:
    det = Detector(mlp, input_std=[0.3081], input_mean=[0.1307])
    det._set_fitted(1000.0, 0.0014, 0.1, 0.95)
    return det.to_dict()


NAN, INF = float("nan"), float("inf")
BAD_FIELDS = [
    ("temperature", 1e-300),
    ("temperature", 1e300),
    ("temperature", NAN),
    ("temperature", -1.0),
    ("temperature", 0),
    ("temperature", "1000"),
    ("temperature", True),
    ("temperature", 10**400),
    ("epsilon", 1e6),
    ("epsilon", -0.001),
    ("epsilon", INF),
    ("epsilon", None),
    ("epsilon", [0.001]),
    ("threshold", NAN),
    ("threshold", 2.0),
    ("threshold", -0.5),
    ("threshold", "high"),
    ("tpr", NAN),
    ("tpr", 1.0),
    ("tpr", "0.95"),
    ("clamp", [NAN, NAN]),
    ("clamp", [None, None]),
    ("clamp", [0.0, None]),
    ("clamp", [1.0, 0.0]),
    ("clamp", [0.0]),
    ("clamp", [[0.0, 0.0], [1.0, 1.0]]),
    ("clamp", "x"),
    ("input_std", "abc"),
    ("input_std", [0.0]),
    ("input_std", [-1.0]),
    ("input_std", [0.3, 0.3]),
    ("input_std", [INF]),
    ("input_mean", [NAN]),
    ("input_mean", [[0.1]]),
    ("input_mean", {"a": 1}),
    ("batch_size", 10**12),
    ("batch_size", 0),
    ("batch_size", 1.5),
    ("batch_size", "16"),
    ("batch_size", True),
    ("objective", "nope"),
    ("objective", 5),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS, ids=[f"{f}={v!r}"[:40] for f, v in BAD_FIELDS])
def test_load_refuses_a_field_out_of_its_range_naming_it(mlp, valid, tmp_path, field, value):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({**valid, field: value}, allow_nan=True))
    with pytest.raises(ValueError, match=rf"corrupt odin-ood detector file: .*{field.split('_')[0]}"):
        Detector.load(p, mlp)


def test_load_refuses_missing_fields_deep_nesting_huge_numbers_and_huge_files(mlp, valid, tmp_path):
    p = tmp_path / "d.json"
    for text, message in [
        (json.dumps({k: v for k, v in valid.items() if k != "epsilon"}), "field 'epsilon' is missing"),
        ('{"format": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
        (json.dumps(valid)[:-1] + ', "x": ' + "9" * 5001 + "}", "not a readable"),
        (json.dumps({**valid, "pad": " " * (2 << 20)}), "larger than"),
        ("\udcff".encode("utf-8", "surrogateescape").decode("latin-1"), "not a readable"),
    ]:
        p.write_text(text)
        with pytest.raises(ValueError, match=message):
            Detector.load(p, mlp)


def test_a_valid_file_loads_with_the_papers_values(mlp, valid, tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({**valid, "temperature": 1000, "clamp": [0.0, [1.0]], "batch_size": 65536}))
    det = Detector.load(p, mlp)
    assert (det.temperature_, det.epsilon_, det.batch_size) == (1000.0, 0.0014, 65536)
    assert (
        det.input_std == pytest.approx([0.3081])
        and det.clamp[0] == 0.0
        and torch.equal(det.clamp[1], torch.ones(1, 1, 1))
    )


class TinyRGB(nn.Module):
    input_shape = (3, 4, 4)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(48, 5)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_per_channel_clamp_survives_save_and_load(tmp_path):
    model = TinyRGB()
    low, high = torch.tensor([-1.0, -0.5, -2.0]).view(3, 1, 1), torch.tensor([1.0, 0.5, 2.0]).view(3, 1, 1)
    det = Detector(model, input_std=[0.2, 0.3, 0.4], clamp=(low, high))
    det._set_fitted(10.0, 0.5, 0.3, 0.95)
    det.save(tmp_path / "d.json")
    loaded = Detector.load(tmp_path / "d.json", model)
    x = torch.rand(8, 3, 4, 4) * 6 - 3
    assert torch.equal(loaded.score(x), det.score(x))


def test_nan_scores_are_out_of_distribution_in_predict_with_a_warning(mlp, valid, tmp_path):
    broken = models.load("mnist-mlp")
    with torch.no_grad():
        broken.fc3.bias[0] = NAN
    det = Detector(broken)
    det._set_fitted(1000.0, 0.0014, 0.1, 0.95)
    x = torch.rand(4, 1, 28, 28)
    with pytest.warns(RuntimeWarning, match="4 of 4 ODIN scores are not finite"):
        out = det.outputs(x)
    assert torch.isnan(out["score"]).all() and out["is_out_of_distribution"].all()
    with pytest.warns(RuntimeWarning):
        assert det.predict(x).tolist() == [1, 1, 1, 1]


TOO_LARGE_FOR_A_FLOAT = [
    ("preprocessing.mean", [10**400], "mean must be 1 or 1 finite numbers"),
    ("preprocessing.std", [10**400], "std must be 1 or 1 finite numbers"),
    ("preprocessing.mean", [0, 10**400], "mean must be 1 or 1"),
    ("preprocessing.std", [[0.5], [10**400]], "std must be 1 or 1"),
]


@pytest.mark.parametrize(
    "field,value,message", TOO_LARGE_FOR_A_FLOAT, ids=[f"{f}={v!r}"[:40] for f, v, _ in TOO_LARGE_FOR_A_FLOAT]
)
def test_numbers_too_large_for_a_float_are_refused_naming_the_field(mlp, valid, tmp_path, field, value, message):
    d = json.loads(json.dumps(valid))
    d["preprocessing"][field.split(".")[1]] = value
    p = tmp_path / "d.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=rf"corrupt odin-ood detector file: preprocessing: {message}") as e:
        Detector.load(p, mlp)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


SIZES_NO_IMAGE_HAS = [  # PIL refuses to decode more than Image.MAX_IMAGE_PIXELS (89,478,485) pixels
    ("input_shape", {"input_shape": [1, 65536, 65536]}, "input_shape .* PIL's pixel limit"),
    ("preprocessing", {"input_shape": [1, 65536, 65536], "resize": "none", "resize_size": None}, "PIL's pixel limit"),
    ("preprocessing", {"resize": "resize-shorter-then-center-crop", "resize_size": 65536}, "PIL's pixel limit"),
    ("preprocessing", {"resize": "squash", "resize_size": [65536, 2000]}, "PIL's pixel limit"),
]


@pytest.mark.parametrize("where,edit,message", SIZES_NO_IMAGE_HAS, ids=[str(e[1])[:50] for e in SIZES_NO_IMAGE_HAS])
def test_sizes_larger_than_any_decodable_image_are_refused_at_load(mlp, valid, tmp_path, where, edit, message):
    d = json.loads(json.dumps(valid))
    d["preprocessing"] = {
        "input_shape": [1, 28, 28],
        "mode": "L",
        "resize": "none",
        "resize_size": None,
        "interpolation": "bilinear-antialias",
        "mean": [0.1307],
        "std": [0.3081],
    }
    (d if where == "input_shape" else d["preprocessing"]).update(edit)
    p = tmp_path / "d.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=message):
        Detector.load(p, mlp)


class _NoClassCount(nn.Module):
    """A model that says neither its classes nor its input size (as a TorchScript file): loading a
    detector for it runs it once on the file's input size to count the classes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 10)

    def forward(self, x):
        return self.fc(x.flatten(1).mean(1, keepdim=True))


def test_a_memory_budget_refuses_the_files_input_size_before_running_the_model(valid, tmp_path):
    model = _NoClassCount()
    runs = []
    model.register_forward_pre_hook(lambda m, args: runs.append(tuple(args[0].shape)))
    det = Detector(model, input_shape=(1, 2000, 2000))
    det._set_fitted(1000.0, 0.0014, 0.5, 0.95)
    p = det.save(tmp_path / "d.json")
    # one 1x2000x2000 float32 input is 16 MB; a budget of 64 MiB cannot score it (38 inputs' worth at least)
    with pytest.raises(ValueError, match=r"1x2000x2000 .* over --max-memory|max_memory"):
        Detector.load(p, model, max_memory=64 << 20)
    assert runs == []  # refused before the model ran on it
    assert Detector.load(p, model, max_memory=1 << 30).input_shape == (1, 2000, 2000)
    assert runs == [(1, 1, 2000, 2000)]
