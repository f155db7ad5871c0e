"""Checkpoint loading: the public checkpoints load strictly and reach their known accuracies;
wrapped/prefixed/safetensors files load identically; bad files fail with clear messages."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from odin_ood import data, models
from odin_ood.training import accuracy


@pytest.fixture(scope="module")
def ckpt_dir(shared_data):
    return shared_data / "models"


@pytest.fixture(scope="module")
def lossless_1000(shared_data):
    return data.load("cifar10-lossless-1000", root=shared_data)


@pytest.fixture(scope="module")
def densenet10(ckpt_dir):
    torch.set_num_threads(2)
    return models.load("densenet-bc-100", weights=ckpt_dir / "densenet-bc-100-cifar10.pth.tar")


def test_densenet_bc_100_cifar10_reaches_94_0_on_lossless_1000(densenet10, lossless_1000):
    assert densenet10.input_mean == (0.4914, 0.4822, 0.4465)
    assert densenet10.input_std == (0.2023, 0.1994, 0.2010)
    assert accuracy(densenet10, lossless_1000, device="cpu") == pytest.approx(0.940, abs=0.002)


def test_resnet20_reaches_91_5_on_lossless_1000(ckpt_dir, lossless_1000):
    model = models.load(ckpt_dir / "resnet20-cifar10.th")  # architecture recognised from the keys
    assert model.arch == "resnet20"
    assert model.input_std == (0.229, 0.224, 0.225)
    assert accuracy(model, lossless_1000, device="cpu") == pytest.approx(0.915, abs=0.002)


def test_densenet_cifar100_checkpoint_has_100_classes(ckpt_dir):
    model = models.load(ckpt_dir / "densenet-bc-100-cifar100.pth.tar")
    assert model.arch == "densenet-bc-100" and model.num_classes == 100
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    assert not model.training


def test_wrong_class_count_names_both_counts(ckpt_dir):
    with pytest.raises(ValueError, match="num_classes=10 requested .* 100-class"):
        models.load("densenet-bc-100", weights=ckpt_dir / "densenet-bc-100-cifar100.pth.tar", num_classes=10)


def test_architecture_mismatch_reports_missing_keys(ckpt_dir):
    with pytest.raises(ValueError, match=r"does not match ResNetCifar.*missing keys: layer1\.3\."):
        models.load("resnet32", weights=ckpt_dir / "resnet20-cifar10.th")


def test_wrong_architecture_reports_unexpected_keys(ckpt_dir):
    with pytest.raises(ValueError, match="unexpected keys"):
        models.load("mnist-mlp", weights=ckpt_dir / "resnet20-cifar10.th")


@pytest.mark.parametrize("layout", ["raw", "wrapped_module", "model_key", "safetensors"])
def test_wrapped_and_prefixed_state_dicts_load_identically(tmp_path, layout):
    torch.manual_seed(0)
    ref = models.build("resnet20").eval()
    state = ref.state_dict()
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pth")
    if layout == "raw":
        torch.save(state, path)
    elif layout == "wrapped_module":
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    elif layout == "model_key":
        torch.save({"model": state, "best_prec1": 90.0}, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    loaded = models.load("resnet20", weights=path)
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(loaded(x), ref(x))


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_arbitrary_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil()}, f)
    with pytest.raises(ValueError, match="weights_only=True"):
        models.load("resnet20", weights=path)
    assert "arbitrary code ran" not in capsys.readouterr().out


def test_non_checkpoint_files_fail_clearly(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pth.*not a PyTorch checkpoint"):
        models.load("resnet20", weights=text)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        models.load("resnet20", weights=bad_st)
    lists = tmp_path / "list.pth"
    torch.save({"state_dict": {"a": torch.zeros(1), "b": [1, 2]}}, lists)
    with pytest.raises(ValueError, match=r"not a state dict: entries \['b'\]"):
        models.load("resnet20", weights=lists)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        models.load("resnet20", weights=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="neither a known model name"):
        models.load("resnet-20")


def test_named_model_without_shipped_weights_asks_for_them():
    with pytest.raises(ValueError, match="no weights shipped.*weights=PATH"):
        models.load("wrn-28-10")


def test_unrecognisable_checkpoint_asks_for_a_name(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"fc.weight": torch.zeros(10, 5), "fc.bias": torch.zeros(10)}, path)
    with pytest.raises(ValueError, match="cannot tell the architecture"):
        models.load(path)
