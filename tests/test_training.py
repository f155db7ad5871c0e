"""Training: the paper's recipes and schedule, augmentation, a short real run that learns,
exact resumption from checkpoints, the train command, and bad input."""

from __future__ import annotations

import itertools
import json
import re

import pytest
import torch

from odin_ood import cli, data, models, training
from odin_ood.training import random_crop_flip

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def mnist_train(shared_data):
    return data.load("mnist", root=shared_data, split="train")


@pytest.fixture(scope="module")
def mnist_test(shared_data):
    return data.load("mnist", root=shared_data, split="test")


def test_paper_recipes():
    d, w, m = training.recipe("densenet"), training.recipe("wrn"), training.recipe("mnist-mlp")
    assert (d.optimizer, d.nesterov, d.momentum, d.lr, d.batch_size, d.epochs) == ("sgd", True, 0.9, 0.1, 64, 300)
    assert (w.optimizer, w.nesterov, w.momentum, w.lr, w.batch_size, w.epochs) == ("sgd", True, 0.9, 0.1, 128, 200)
    assert (d.weight_decay, w.weight_decay) == (1e-4, 5e-4)
    assert (m.optimizer, m.epochs) == ("adam", 30)
    assert (d.crop_padding, d.flip) == (4, True)


def test_mnist_recipes_are_their_sources_and_have_no_augmentation():
    m, n = training.recipe("mnist-mlp"), training.recipe("mnist-lenet")
    assert (m.optimizer, m.lr, m.batch_size, m.epochs, m.weight_decay) == ("adam", 1e-3, 128, 30, 0.0)
    assert (m.l2_penalty, m.l2_parameters) == (1e-5, ("fc1.weight", "fc2.weight", "fc3.weight"))
    steps = 469  # per epoch of 60,000 images in batches of 128
    assert [m.lr_at(e * steps / (30 * steps)) for e in (0, 19, 20, 29)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    assert (n.optimizer, n.lr, n.momentum, n.nesterov, n.batch_size, n.epochs) == ("sgd", 0.01, 0.9, False, 64, 20)
    assert n.lr_at(0.0) == n.lr_at(1.0) == 0.01
    for r in (m, n, training.Recipe("custom", "sgd", lr=0.1, epochs=1, batch_size=8)):
        assert (r.crop_padding, r.flip) == (0, False)  # augmentation is opt-in


def test_l2_penalty_is_tensorflow_l2_loss_on_the_named_weights_only():
    model = models.build("mnist-mlp")
    named = dict(model.named_parameters())
    expected = 1e-5 * sum(
        float((named[k].detach().double() ** 2).sum()) / 2 for k in ("fc1.weight", "fc2.weight", "fc3.weight")
    )
    assert float(training.recipe("mnist-mlp").penalty(named).detach()) == pytest.approx(expected, rel=1e-6)
    assert training.recipe("mnist-lenet").penalty(named) == 0.0
    bad = training.Recipe("bad", "adam", lr=1e-3, epochs=1, batch_size=8, l2_penalty=1.0, l2_parameters=("fc9.weight",))
    with pytest.raises(ValueError, match=re.escape("fc9.weight")):
        bad.penalty(named)


@pytest.mark.parametrize(
    "progress,expected", [(0.0, 0.1), (0.4999, 0.1), (0.5, 0.01), (0.7499, 0.01), (0.75, 0.001), (1.0, 0.001)]
)
def test_lr_divided_by_10_at_50_and_75_percent(progress, expected):
    assert training.recipe("densenet").lr_at(progress) == pytest.approx(expected)


def test_lr_at_rejects_progress_outside_0_1():
    with pytest.raises(ValueError, match="progress"):
        training.recipe("wrn").lr_at(1.5)


def test_unknown_recipe_lists_known():
    with pytest.raises(ValueError, match=r"unknown recipe 'adamw'.*densenet"):
        training.recipe("adamw")


def test_random_crop_is_a_window_of_the_zero_padded_image():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 3, 8, 8)
    out = random_crop_flip(x, padding=2, flip=False, generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    windows = padded.unfold(2, 8, 1).unfold(3, 8, 1)  # (N, C, 5, 5, 8, 8): every possible crop
    for i in range(64):
        matches = (windows[i] == out[i][:, None, None]).flatten(3).all(-1).all(0)
        assert matches.any(), f"sample {i} is not a crop of its padded image"
    shifts = {
        tuple((windows[i] == out[i][:, None, None]).flatten(3).all(-1).all(0).nonzero()[0].tolist()) for i in range(64)
    }
    assert len(shifts) > 10  # offsets vary per sample


def test_random_flip_mirrors_about_half():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1000, 1, 4, 4)
    out = random_crop_flip(x, padding=0, flip=True, generator=g)
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 400 < int(mirrored.sum()) < 600


def test_short_mnist_run_lowers_loss_and_raises_accuracy(mnist_train, mnist_test):
    torch.manual_seed(0)
    model = models.build("mnist-mlp")
    test = mnist_test.subset(torch.arange(2000))
    before = training.accuracy(model, test, device="cpu")
    result = training.train(
        model, mnist_train.subset(torch.arange(12800)), epochs=3, seed=0, device="cpu", progress=False
    )
    assert result.steps == 300
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
    assert before < 0.3 and training.accuracy(model, test, device="cpu") > 0.88


def test_schedule_in_a_real_run(mnist_train):
    """4 epochs of 4 steps: lr at each epoch's last step is 0.1, 0.1, 0.01, 0.001 (SGD recipe)."""
    model = models.build("mnist-mlp")
    result = training.train(
        model, mnist_train.subset(torch.arange(256)), epochs=4, recipe="densenet", device="cpu", progress=False
    )
    assert [h["lr"] for h in result.history] == pytest.approx([0.1, 0.1, 0.01, 0.001])


@pytest.mark.parametrize("recipe", ["mnist-mlp", "wrn"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, mnist_train, recipe):
    subset = mnist_train.subset(torch.arange(512))
    kw = dict(epochs=3, recipe=recipe, batch_size=128, seed=3, device="cpu", progress=False)
    torch.manual_seed(0)
    full = models.build("mnist-mlp")
    training.train(full, subset, **kw)
    torch.manual_seed(0)
    first = models.build("mnist-mlp")
    training.train(first, subset, max_steps=4, checkpoint_dir=tmp_path, **kw)  # stops after epoch 1
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 1
    torch.manual_seed(123)  # a different init: everything must come from the checkpoint
    resumed = models.build("mnist-mlp")
    result = training.train(resumed, subset, checkpoint_dir=tmp_path, **kw)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_loads_as_a_model(tmp_path, mnist_train):
    model = models.build("mnist-mlp")
    training.train(
        model, mnist_train.subset(torch.arange(256)), epochs=1, device="cpu", progress=False, checkpoint_dir=tmp_path
    )
    loaded = models.load(tmp_path / "model.safetensors")
    assert loaded.arch == "mnist-mlp" and loaded.input_std == (1.0,)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded(x), model(x))


def test_resume_with_different_settings_is_refused(tmp_path, mnist_train):
    subset = mnist_train.subset(torch.arange(256))
    training.train(models.build("mnist-mlp"), subset, epochs=1, device="cpu", progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"cannot resume.*seed: checkpoint 0 vs requested 1"):
        training.train(
            models.build("mnist-mlp"), subset, epochs=1, seed=1, device="cpu", progress=False, checkpoint_dir=tmp_path
        )


def test_wrn_40_4_few_steps_fit_a_fixed_batch(shared_data):
    images = data.load("cifar10-lossless-1000", root=shared_data).subset(torch.arange(8))
    torch.manual_seed(0)
    model = models.build("wrn-40-4")
    r = training.Recipe("fit", "sgd", lr=0.02, epochs=3, batch_size=8, crop_padding=0, flip=False, milestones=())
    result = training.train(model, images, recipe=r, device="cpu", progress=False)
    losses = [h["loss"] for h in result.history]
    assert all(a > b for a, b in itertools.pairwise(losses)) and losses[-1] < 0.85 * losses[0], losses


def test_incompatible_data_is_rejected(mnist_test):
    with pytest.raises(ValueError, match=r"shape \(1, 28, 28\); the model expects \(3, 32, 32\)"):
        training.train(models.build("resnet20"), mnist_test, epochs=1, device="cpu")
    with pytest.raises(ValueError, match="labels up to 9; the model has 5 classes"):
        training.train(models.build("mnist-mlp", num_classes=5), mnist_test, epochs=1, device="cpu")


def test_train_command_writes_a_loadable_checkpoint(tmp_path, shared_data, capsys):
    code = cli.main(
        [
            "train",
            "mnist-mlp",
            "--data",
            "mnist",
            "--root",
            str(shared_data),
            "--epochs",
            "1",
            "--train-limit",
            "1280",
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 10 and summary["epochs"] == 1
    model = models.load(tmp_path / "model.safetensors")
    test = data.load("mnist", root=shared_data, split="test")
    assert summary["test_accuracy"] == pytest.approx(training.accuracy(model, test, device="cpu"))
    assert summary["test_accuracy"] > 0.5


def test_max_steps_inside_an_epoch_writes_no_checkpoint(tmp_path, mnist_train):
    result = training.train(
        models.build("mnist-mlp"),
        mnist_train.subset(torch.arange(1280)),
        epochs=1,
        max_steps=3,
        device="cpu",
        progress=False,
        checkpoint_dir=tmp_path,
    )
    assert result.steps == 3 and not (tmp_path / "state.json").exists()


def test_train_command_unknown_model_fails_clearly(tmp_path, shared_data, capsys):
    code = cli.main(["train", "vgg", "--data", "mnist", "--root", str(shared_data), "--out", str(tmp_path)])
    assert code == 2
    assert "unknown model name 'vgg'" in capsys.readouterr().err


@pytest.mark.gpu
def test_bf16_autocast_training_on_cuda(mnist_train):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = models.build("mnist-mlp")
    result = training.train(
        model, mnist_train.subset(torch.arange(12800)), epochs=2, device="cuda", bf16=True, progress=False
    )
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_bf16_autocast_path_trains_on_cpu(mnist_train):
    """The autocast branch itself (bfloat16 matmuls on the CPU here; CUDA in the gpu test)."""
    torch.manual_seed(0)
    model = models.build("mnist-mlp")
    result = training.train(
        model, mnist_train.subset(torch.arange(2560)), epochs=2, device="cpu", bf16=True, progress=False
    )
    assert result.history[-1]["loss"] < 0.7 * result.history[0]["loss"]
    assert model.fc1.weight.dtype == torch.float32  # autocast leaves the master weights in float32
