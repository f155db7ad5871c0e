"""Checkpoint loading: the public checkpoints load strictly and reach their known accuracies;
wrapped/prefixed/safetensors files load identically; bad files fail with clear messages."""

from __future__ import annotations

import pickle
import re

import pytest
import torch
from safetensors.torch import save_file

from odin_ood import data, models
from odin_ood.training import accuracy

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def ckpt_dir(shared_data):
    return shared_data / "models"


@pytest.fixture(scope="module")
def lossless_1000(shared_data):
    return data.load("cifar10-lossless-1000", root=shared_data)


@pytest.fixture(scope="module")
def densenet10(ckpt_dir):
    return models.load("densenet-bc-100", weights=ckpt_dir / "densenet-bc-100-cifar10.pth.tar")


def test_densenet_bc_100_cifar10_reaches_94_0_on_lossless_1000(densenet10, lossless_1000):
    assert densenet10.input_mean == (0.4914, 0.4822, 0.4465)
    assert densenet10.input_std == (0.2023, 0.1994, 0.2010)
    assert accuracy(densenet10, lossless_1000, batch_size=100, device="cpu") == pytest.approx(0.940, abs=0.002)


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
    with pytest.raises(ValueError, match=r"num_classes=10 requested .* 100-class"):
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


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
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
    with pytest.raises(ValueError, match=r"notes.pth.*not a PyTorch checkpoint"):
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
    with pytest.raises(ValueError, match=r"no weights shipped.*weights=PATH"):
        models.load("wrn-28-10")


def test_unrecognisable_checkpoint_asks_for_a_name(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"fc.weight": torch.zeros(10, 5), "fc.bias": torch.zeros(10)}, path)
    with pytest.raises(ValueError, match="cannot tell the architecture"):
        models.load(path)


@pytest.fixture(scope="module")
def densenet_under_encoder(ckpt_dir, tmp_path_factory):
    """The real DenseNet-BC-100 checkpoint re-saved as another library lays it out: a plain state
    dict with the body under ``encoder.`` and the head called ``output_layer``."""
    state = models.read_state_dict(ckpt_dir / "densenet-bc-100-cifar10.pth.tar")
    renamed = {(f"output_layer{k[2:]}" if k.startswith("fc.") else f"encoder.{k}"): v for k, v in state.items()}
    path = tmp_path_factory.mktemp("encoder") / "densenet-encoder.pt"
    torch.save(renamed, path)
    return path


def test_checkpoint_under_other_key_names_is_refused_with_the_flags_to_pass(densenet_under_encoder):
    with pytest.raises(
        ValueError,
        match=r"unexpected keys: encoder\.conv1\.weight.*strip_prefixes=\('encoder\.',\)"
        r".*--strip-prefix encoder\..*--rename-key OLD=NEW",
    ):
        models.load("densenet-bc-100", weights=densenet_under_encoder)
    with pytest.raises(ValueError, match="cannot tell the architecture"):
        models.load(densenet_under_encoder)
    with pytest.raises(
        ValueError, match=re.escape("missing keys: fc.weight")
    ):  # stripping alone leaves the head unnamed
        models.load("densenet-bc-100", weights=densenet_under_encoder, strip_prefixes=("encoder.",))


def test_key_mapping_loads_the_checkpoint_with_identical_logits(densenet10, densenet_under_encoder, lossless_1000):
    mapping = dict(strip_prefixes=("encoder.",), rename_keys={"output_layer": "fc"})
    named = models.load("densenet-bc-100", weights=densenet_under_encoder, **mapping)
    recognised = models.load(densenet_under_encoder, **mapping)  # the architecture is recognised after mapping
    x = (lossless_1000.tensors()[0][:8] - torch.tensor(named.input_mean).view(1, 3, 1, 1)) / torch.tensor(
        named.input_std
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        want = densenet10(x)
        assert torch.equal(named(x), want) and torch.equal(recognised(x), want)


@pytest.mark.parametrize(
    "mapping,match",
    [
        (dict(strip_prefixes=("decoder.",)), "strip prefix 'decoder.' matches no checkpoint key"),
        (dict(strip_prefixes=("encoder.",), rename_keys={"head": "fc"}), "rename 'head' -> 'fc': no checkpoint key"),
        (
            dict(strip_prefixes=("encoder.",), rename_keys={"output_layer": "conv1"}),
            "two checkpoint keys to 'conv1.weight'",
        ),
    ],
)
def test_key_mapping_that_does_nothing_or_collides_is_an_error(densenet_under_encoder, mapping, match):
    with pytest.raises(ValueError, match=match):
        models.load("densenet-bc-100", weights=densenet_under_encoder, **mapping)


def test_score_command_flags_map_keys_and_the_detector_fingerprint_matches(
    densenet10, densenet_under_encoder, lossless_1000, tmp_path
):
    from odin_ood import Detector
    from odin_ood.cli import build_parser
    from odin_ood.commands.loading import load_detector
    from odin_ood.commands.options import ModelOptions

    def load(argv):
        args = build_parser().parse_args(argv)
        return load_detector(ModelOptions.from_args(args), args.detector)

    x = (lossless_1000.tensors()[0][:16] - torch.tensor(densenet10.input_mean).view(1, 3, 1, 1)) / torch.tensor(
        densenet10.input_std
    ).view(1, 3, 1, 1)
    det = Detector(
        densenet10,
        input_std=densenet10.input_std,
        temperatures=(1000.0,),
        epsilons=(0.0,),
        batch_size=16,
        normalise=False,
    )  # x is normalised (the noise is any OOD input)
    det.fit(x, torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))).save(tmp_path / "det")
    argv = [
        "score",
        "in/",
        "--output",
        "s.csv",
        "--detector",
        str(tmp_path / "det"),
        "--model",
        "densenet-bc-100",
        "--weights",
        str(densenet_under_encoder),
        "--device",
        "cpu",
    ]
    with pytest.raises(ValueError, match="--strip-prefix encoder"):
        load(argv)
    loaded, _ = load([*argv, "--strip-prefix", "encoder.", "--rename-key", "output_layer=fc"])
    # Detector.load checks the weights' fingerprint: identical weights
    assert loaded.model_fingerprint_ == det.model_fingerprint_
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--rename-key", "output_layer"])


def test_head_classes_reads_a_fine_tuned_heads_size_and_nothing_else():
    from torch import nn

    from odin_ood.models.checkpoint import head_classes

    def net(classes: int, width: int = 8) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, width, 3), nn.BatchNorm2d(width), nn.Flatten(), nn.Linear(width * 4, classes))

    default = net(1000)
    assert head_classes(default, net(10).state_dict()) == 10  # (10, 32) vs (1000, 32) and (10,) vs (1000,)
    assert head_classes(default, net(1000).state_dict()) is None  # fits: nothing to read
    assert head_classes(default, net(10, width=16).state_dict()) is None  # the body differs too
    state = net(10).state_dict()
    del state["3.bias"]
    assert head_classes(default, state) is None  # a missing key is not a head size


def test_reproduce_num_classes_that_contradicts_the_checkpoint_is_one_line(capsys, tmp_path, shared_data):
    from odin_ood.cli import main

    assert (
        main(
            [
                "reproduce",
                "mnist-lenet",
                "--num-classes",
                "5",
                "--quick",
                "--out",
                str(tmp_path / "r"),
                "--data-root",
                str(shared_data),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has a 10-class classifier: pass --num-classes 10" in err, err
