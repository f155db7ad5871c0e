"""``odin-ood fit`` on what a careless operator passes: ``--limit`` caps the noise side too when
there are no OOD inputs, a model that outputs NaN on one image names that image, and the record
labels the ID and OOD parts for what they are; images among both the ID and the OOD inputs, an
existing detector, bad arguments, a model that does not say its input size and an undecodable
image each end in one line, writing nothing."""

from __future__ import annotations

import io
import json

import pytest
import torch

from odin_ood import Detector, data, models
from odin_ood.cli import main
from odin_ood.tuning import noise_ood_set
from serving_support import encode, write_pngs

pytestmark = pytest.mark.usefixtures("torch_one_thread")
GRID = ("--temperatures", "1,1000", "--epsilons", "0,0.002")


def fit(out, *args):
    return main(["fit", "--out", str(out), "--threads", "1", "--workers", "1", "--quiet", *GRID, *map(str, args)])


@pytest.fixture(scope="module")
def digits(shared_data, tmp_path_factory):
    mnist = data.load("mnist", root=shared_data)
    folder = tmp_path_factory.mktemp("digits")
    images = mnist.images[6000:6060, 0].numpy()
    for k, image in enumerate(images):
        (folder / f"{k:03d}.png").write_bytes(encode(image))
    return folder, images


def test_limit_caps_the_noise_side_too(digits, tmp_path):
    folder, images = digits
    out = tmp_path / "det"
    assert fit(out, "--model", "mnist-mlp", "--id", folder, "--limit", 40, "--holdout", 0.25) == 0
    record = json.loads((out / "fit.json").read_text())
    tuning, held = record["tuning"], record["heldout"]
    assert (tuning["id"]["count"], held["id"]["count"]) == (30, 10)
    assert (tuning["ood"]["count"], held["ood"]["count"]) == (30, 10)  # 40 noise images: 15 + 15 tune, 5 + 5 evaluate
    order = [int(s.rsplit("/", 1)[1][:3]) for s in tuning["id"]["sources"]]
    x = torch.from_numpy(images[order]).float().div(255)[:, None]
    model = models.load("mnist-mlp")
    det = Detector(model, temperatures=(1, 1000), epsilons=(0, 0.002))
    det.fit(x, noise_ood_set(x, 15, model.input_mean, model.input_std))
    saved = json.loads((out / "detector.json").read_text())
    assert (saved["temperature"], saved["epsilon"], saved["threshold"]) == (
        det.temperature_,
        det.epsilon_,
        det.threshold_,
    )


def test_parts_are_labelled_id_and_ood(digits, shared_data, tmp_path):
    folder, _ = digits
    out = tmp_path / "det"
    assert (
        fit(out, "--model", "mnist-mlp", "--id", folder, "--ood", "notmnist", "--data-root", shared_data, "--limit", 40)
        == 0
    )
    record = json.loads((out / "fit.json").read_text())
    for part in (record["tuning"], record["heldout"]):
        assert (part["id"]["what"], part["ood"]["what"]) == ("the ID inputs", "the OOD inputs")


NAN_MODEL = '''
import torch
from odin_ood import models

class NaNOnWhiteCorner(torch.nn.Module):
    """The MNIST MLP, but NaN logits for an image whose top-left pixel is white."""
    def __init__(self):
        super().__init__()
        self.base = models.load("mnist-mlp")
        self.input_shape, self.input_mean, self.input_std = (1, 28, 28), (0.0,), (1.0,)
    def forward(self, x):
        logits = self.base(x)
        white = (x[:, 0, 0, 0] > 0.99)[:, None]
        return torch.where(white, torch.full_like(logits, float("nan")), logits)

def make():
    return NaNOnWhiteCorner().eval()
'''


def test_a_model_that_outputs_nan_on_one_image_names_it(digits, tmp_path, monkeypatch, capsys):
    _, images = digits
    folder = tmp_path / "ids"
    folder.mkdir()
    for k, image in enumerate(images[:30]):
        image = image.copy()
        if k == 17:
            image[0, 0] = 255
        (folder / f"{k:03d}.png").write_bytes(encode(image))
    (tmp_path / "nan_model.py").write_text(NAN_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert fit(tmp_path / "det", "--model", "nan_model:make", "--id", folder, "--holdout", 0) == 2
    err = capsys.readouterr().err
    assert f"on 1 tuning ID image(s), e.g. {folder}/017.png: remove them" in err and "Traceback" not in err


def test_images_among_both_id_and_ood_inputs_are_refused(digits, tmp_path, capsys):
    images = digits[1][:10]
    a = write_pngs(tmp_path / "a", images)
    b = write_pngs(tmp_path / "b", images[:3], names=["x.png", "y.png", "z.png"])
    assert fit(tmp_path / "det", "--model", "mnist-mlp", "--id", a, "--ood", b, "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert "3 image(s) appear among both the ID and the OOD inputs" in err and "\n" not in err
    assert not (tmp_path / "det").exists()


def test_an_existing_detector_is_not_overwritten(digits, tmp_path, capsys):
    folder = write_pngs(tmp_path / "d", digits[1][:20])
    args = ["--model", "mnist-mlp", "--id", folder, "--quiet", "--temperatures", "1", "--epsilons", "0"]
    assert fit(tmp_path / "det", *args) == 0
    before = (tmp_path / "det" / "detector.json").read_bytes()
    assert fit(tmp_path / "det", *args, "--seed", 1) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "det" / "detector.json").read_bytes() == before
    assert fit(tmp_path / "det", *args, "--seed", 1, "--overwrite") == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--holdout", "1"], "--holdout must lie in [0, 1)"),
        (["--limit", "0"], "--limit must be >= 1"),
        (["--tpr", "1.5"], "tpr must lie strictly between 0 and 1"),
        (["--epsilons", "-1"], "epsilons must be a finite number in [0, 1]"),
        (["--model", "mnist-mlp", "--input-size", "3,32,32"], "does not take inputs of size 3x32x32"),
        (["--model", "wrn-28-10"], "no weights shipped"),
        (["--model", "densenet-bc-100", "--weights", "missing.pth"], "does not exist"),
        (["--model", "no-such-net"], "neither a known model name"),
        (["--ood", "letters/", "--ood-free", "id-only"], "pass --ood or --ood-free, not both"),
    ],
)
def test_bad_fit_arguments_end_in_one_line(digits, tmp_path, capsys, args, message):
    folder = write_pngs(tmp_path / "d", digits[1][:10])
    model = [] if "--model" in args else ["--model", "mnist-mlp"]
    assert fit(tmp_path / "det", *model, "--id", folder, "--quiet", *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("odin-ood fit: error:")


def test_a_model_that_does_not_say_its_input_size_asks_for_it(digits, tmp_path, capsys):
    program = torch.export.export(
        models.load("mnist-mlp"), (torch.zeros(2, 1, 28, 28),), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)
    )
    torch.export.save(program, str(tmp_path / "m.pt2"))
    folder = write_pngs(tmp_path / "d", digits[1][:10])
    assert fit(tmp_path / "det", "--model", tmp_path / "m.pt2", "--id", folder, "--quiet") == 2
    assert "pass --input-size C,H,W" in capsys.readouterr().err


def test_bad_input_size_text_is_an_argument_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        fit(tmp_path / "det", "--model", "mnist-mlp", "--id", tmp_path, "--input-size", "28x28")
    assert info.value.code == 2 and "comma-separated integers" in capsys.readouterr().err


def test_undecodable_image_names_the_file(digits, tmp_path, capsys):
    folder = write_pngs(tmp_path / "d", digits[1][:5])
    (folder / "broken.png").write_bytes(io.BytesIO(b"\x89PNG\r\n\x1a\n nope").getvalue())
    assert fit(tmp_path / "det", "--model", "mnist-mlp", "--id", folder, "--quiet") == 2
    assert "broken.png: not an image" in capsys.readouterr().err
