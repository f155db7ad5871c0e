"""Same detector and scores whatever the packaging, through the command line: ``fit`` -> ``score``
-> ``serve`` for the shipped MNIST model as a zoo name, a TorchScript archive, a ``.pt2`` program
and a ``module:factory``, and for DenseNet-BC-100 (a few real CIFAR-10 and Tiny ImageNet images)
as a checkpoint, TorchScript and ``.pt2``."""

from __future__ import annotations

import json
import zipfile

import httpx
import pytest

from odin_ood import data, models
from odin_ood.cli import main
from odin_ood.commands.row_files import read_rows
from serving_support import encode, start_server, stop_server
from test_models_sources import export_program, export_torchscript

pytestmark = [
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning"),
]

FACTORY = "from odin_ood import models\n\n\ndef build():\n    return models.load('mnist-mlp')\n"


def fit_and_score(root, name, model_args, fit_args, inputs, score_args=()):
    """``odin-ood fit`` into ``root/det-NAME``, then ``odin-ood score`` of ``inputs``; (detector
    dict, rows). ``score`` gets only --model/--weights: the input size comes from the detector."""
    det = root / f"det-{name}"
    assert main(["fit", "--out", str(det), *model_args, *fit_args, "--threads", "1", "--quiet"]) == 0
    out = root / f"scores-{name}.csv"
    assert (
        main(
            [
                "score",
                *map(str, inputs),
                "--output",
                str(out),
                "--detector",
                str(det),
                *_model_only(model_args),
                *score_args,
                "--threads",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    return json.loads((det / "detector.json").read_text()), list(read_rows(out))


def _model_only(args):
    """--model and --weights from a list of model options (drops --input-*: the detector has them)."""
    kept, i = [], 0
    while i < len(args):
        if args[i] in ("--model", "--weights"):
            kept += args[i : i + 2]
        i += 2
    return kept


def assert_same(reference, other, atol=1e-6):
    (det_a, rows_a), (det_b, rows_b) = reference, other
    assert (det_a["temperature"], det_a["epsilon"]) == (det_b["temperature"], det_b["epsilon"])
    assert det_b["threshold"] == pytest.approx(det_a["threshold"], abs=atol)
    assert [r["source"] for r in rows_a] == [r["source"] for r in rows_b]
    assert [r["predicted_class"] for r in rows_a] == [r["predicted_class"] for r in rows_b]
    assert [r["is_out_of_distribution"] for r in rows_a] == [r["is_out_of_distribution"] for r in rows_b]
    diff = max(abs(a["score"] - b["score"]) for a, b in zip(rows_a, rows_b, strict=True))
    assert diff <= atol


@pytest.fixture(scope="module")
def mnist(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist-packaging")
    digits = data.load("mnist", root=shared_data).images[3000:3040, 0].numpy()
    letters = data.load("notmnist", root=shared_data).images[3000:3040, 0].numpy()
    for name, images in (("digits", digits), ("letters", letters)):
        (root / name).mkdir()
        for k, image in enumerate(images):
            (root / name / f"{k:02d}.png").write_bytes(encode(image))
    eager = models.load("mnist-mlp")
    ts = export_torchscript(eager, root / "mnist.ts")
    pt2 = export_program(eager, root / "mnist.pt2", eager.input_shape)
    (root / "user_factory.py").write_text(FACTORY)
    sources = {
        "zoo": ["--model", "mnist-mlp"],
        "torchscript": ["--model", str(ts), "--input-size", "1,28,28"],
        "export": ["--model", str(pt2), "--input-size", "1,28,28"],
        "factory": ["--model", "user_factory:build"],
    }
    fit_args = [
        "--id",
        str(root / "digits"),
        "--ood",
        str(root / "letters"),
        "--temperatures",
        "1,10,1000",
        "--epsilons",
        "0,0.001,0.002",
        "--batch-size",
        "16",
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the factory's module is in the current folder
        results = {
            name: fit_and_score(root, name, args, fit_args, [root / "digits", root / "letters"])
            for name, args in sources.items()
        }
    return root, sources, results


@pytest.mark.parametrize("name", ["torchscript", "export", "factory"])
def test_mnist_fit_and_score_equal_the_eager_model_whatever_the_packaging(mnist, name):
    _, _, results = mnist
    assert_same(results["zoo"], results[name])
    assert len(results[name][1]) == 80


@pytest.mark.parametrize("name", ["torchscript", "export"])
def test_mnist_serve_answers_like_the_eager_model(mnist, name):
    root, sources, results = mnist
    proc, url = start_server(
        ["--detector", str(root / f"det-{name}"), *_model_only(sources[name]), "--max-batch", "16", "--no-auth"]
    )
    try:
        files = [
            ("images", (f"{k}.png", (root / folder / f"{k:02d}.png").read_bytes()))
            for folder, k in (("digits", 0), ("digits", 7), ("letters", 3))
        ]
        r = httpx.post(url + "/v1/predict", files=files, timeout=30.0)
    finally:
        stop_server(proc)
    assert r.status_code == 200, r.text
    eager = results["zoo"][1]
    want = [eager[0], eager[7], eager[40 + 3]]
    got = r.json()["predictions"]
    assert [g["predicted_class"] for g in got] == [w["predicted_class"] for w in want]
    assert max(abs(g["score"] - w["score"]) for g, w in zip(got, want, strict=True)) <= 1e-6


@pytest.fixture(scope="module")
def densenet(shared_data, tmp_path_factory):
    """6 lossless CIFAR-10 test images (ID) and 6 Tiny ImageNet test images (OOD, 64x64, resized
    to 32x32 by the command); DenseNet-BC-100 as its checkpoint, TorchScript and .pt2."""
    root = tmp_path_factory.mktemp("densenet-packaging")
    cifar = data.load("cifar10-lossless-1000", root=shared_data).images[:6].permute(0, 2, 3, 1).numpy()
    (root / "cifar").mkdir()
    for k, image in enumerate(cifar):
        (root / "cifar" / f"{k}.png").write_bytes(encode(image))
    (root / "tiny").mkdir()
    with zipfile.ZipFile(shared_data / "tiny-imagenet" / "tiny-imagenet-200-test.zip") as z:
        for k in range(6):
            (root / "tiny" / f"test_{k}.JPEG").write_bytes(z.read(f"tiny-imagenet-200/test/images/test_{k}.JPEG"))
    weights = shared_data / "models" / "densenet-bc-100-cifar10.pth.tar"
    eager = models.load("densenet-bc-100", weights=weights)
    flags = [
        "--input-size",
        "3,32,32",
        "--input-mean",
        ",".join(map(str, eager.input_mean)),
        "--input-std",
        ",".join(map(str, eager.input_std)),
    ]
    sources = {
        "checkpoint": ["--model", "densenet-bc-100", "--weights", str(weights)],
        "torchscript": ["--model", str(export_torchscript(eager, root / "densenet.ts")), *flags],
        "export": ["--model", str(export_program(eager, root / "densenet.pt2", eager.input_shape)), *flags],
    }
    fit_args = [
        "--id",
        str(root / "cifar"),
        "--ood",
        str(root / "tiny"),
        "--temperatures",
        "1000",
        "--epsilons",
        "0,0.0014",
        "--resize",
        "squash",
        "--interpolation",
        "bilinear-antialias",
        "--batch-size",
        "4",
    ]
    results = {
        name: fit_and_score(root, name, args, fit_args, [root / "cifar", root / "tiny"], [])
        for name, args in sources.items()
    }
    return root, sources, results


@pytest.mark.parametrize("name", ["torchscript", "export"])
def test_densenet_fit_and_score_equal_the_eager_model_whatever_the_packaging(densenet, name):
    _, _, results = densenet
    assert_same(results["checkpoint"], results[name], atol=1e-5)
    detector = results[name][0]
    assert detector["input_shape"] == [3, 32, 32] and detector["input_std"] == pytest.approx([0.2023, 0.1994, 0.2010])


def test_densenet_pt2_served_answers_like_the_checkpoint(densenet):
    root, sources, results = densenet
    proc, url = start_server(
        ["--detector", str(root / "det-export"), *_model_only(sources["export"]), "--max-batch", "4", "--no-auth"]
    )
    try:
        files = [
            ("images", ("a.png", (root / "cifar" / "2.png").read_bytes())),
            ("images", ("b.jpg", (root / "tiny" / "test_1.JPEG").read_bytes())),
        ]
        r = httpx.post(url + "/v1/predict", files=files, timeout=300.0)
    finally:
        stop_server(proc)
    assert r.status_code == 200, r.text
    want = [results["checkpoint"][1][2], results["checkpoint"][1][6 + 1]]
    got = r.json()["predictions"]
    assert [g["predicted_class"] for g in got] == [w["predicted_class"] for w in want]
    assert max(abs(g["score"] - w["score"]) for g, w in zip(got, want, strict=True)) <= 1e-5
