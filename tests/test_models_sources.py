"""Every model source of ``odin_ood.models.load``: TorchScript archives, torch.export programs and
``package.module:factory`` give the eager model's ODIN scores; torchvision/timm are checked where
they import; bad specs fail in one line naming the problem."""

from __future__ import annotations

import importlib
import re
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from odin_ood import data, models, odin_scores
from odin_ood.detector.fingerprint import fingerprint

pytestmark = [
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning"),
]

MNIST_INPUT = {"input_shape": (1, 28, 28), "input_mean": (0.0,), "input_std": (1.0,)}


def export_torchscript(model: torch.nn.Module, path):
    torch.jit.save(torch.jit.script(model), str(path))
    return path


def export_program(model: torch.nn.Module, path, shape):
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (torch.zeros(2, *shape),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except Exception:  # not installed, or a build that does not match this torch
        return False


@pytest.fixture(scope="module")
def mnist_batch(shared_data):
    """32 real MNIST digits and 32 notMNIST letters, pixels in [0, 1]."""
    digits = data.load("mnist", root=shared_data).images[:32].float() / 255
    letters = data.load("notmnist", root=shared_data).images[:32].float() / 255
    return torch.cat([digits, letters])


@pytest.fixture(scope="module")
def mnist_packages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist-packages")
    eager = models.load("mnist-mlp")
    return eager, {
        "torchscript": export_torchscript(eager, folder / "mnist.ts"),
        "export": export_program(eager, folder / "mnist.pt2", eager.input_shape),
    }


@pytest.mark.parametrize("form", ["torchscript:{ts}", "{ts}", "export:{pt2}", "{pt2}"])
def test_packaged_mnist_model_gives_the_eager_odin_scores(mnist_packages, mnist_batch, form):
    eager, paths = mnist_packages
    spec = form.format(ts=paths["torchscript"], pt2=paths["export"])
    model = models.load(spec, **MNIST_INPUT)
    assert (model.input_shape, model.input_mean, model.input_std, model.num_classes) == (
        (1, 28, 28),
        (0.0,),
        (1.0,),
        10,
    )
    assert not model.training
    for t, e in [(1.0, 0.0), (1000.0, 0.0014), (10.0, 0.004)]:
        want = odin_scores(eager, mnist_batch, t, e, input_std=eager.input_std)
        got = odin_scores(model, mnist_batch, t, e, input_std=model.input_std)
        assert torch.allclose(got, want, atol=1e-6, rtol=0), (spec, t, e, (got - want).abs().max())
    assert torch.equal(model(mnist_batch[:4]), eager(mnist_batch[:4]))


def test_packaged_model_without_metadata_loads_and_reports_unknown_input(mnist_packages):
    model = models.load(mnist_packages[1]["export"])
    assert model.input_shape is None and model.input_mean is None and model.input_std is None


@pytest.fixture(scope="module")
def densenet_packages(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("densenet-packages")
    eager = models.load("densenet-bc-100", weights=shared_data / "models" / "densenet-bc-100-cifar10.pth.tar")
    x = data.load("cifar10-lossless-1000", root=shared_data).images[:4].float() / 255
    x = (x - torch.tensor(eager.input_mean).view(1, 3, 1, 1)) / torch.tensor(eager.input_std).view(1, 3, 1, 1)
    return (
        eager,
        x,
        {
            "torchscript": export_torchscript(eager, folder / "densenet.ts"),
            "export": export_program(eager, folder / "densenet.pt2", eager.input_shape),
        },
    )


@pytest.mark.parametrize("packaging", ["torchscript", "export"])
def test_packaged_densenet_bc_100_gives_the_eager_odin_scores(densenet_packages, packaging):
    eager, x, paths = densenet_packages
    model = models.load(
        paths[packaging], input_shape=eager.input_shape, input_mean=eager.input_mean, input_std=eager.input_std
    )
    assert model.num_classes == 10
    want = odin_scores(eager, x, 1000.0, 0.0014, input_std=eager.input_std, normalise=False)
    got = odin_scores(model, x, 1000.0, 0.0014, input_std=model.input_std, normalise=False)
    assert torch.allclose(got, want, atol=1e-6, rtol=0), (got - want).abs().max()


USER_MODULE = """
import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(8 * 12 * 12, 10))
        self.input_shape = (1, 28, 28)
        self.input_mean = (0.1307,)
        self.input_std = (0.3081,)

    def forward(self, x):
        return self.body(x)


def build():
    return SmallNet()


def not_a_model():
    return "hello"


def broken():
    raise RuntimeError("no GPU found")
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's own module ``user_models.py`` in the current folder, and its network trained for
    100 steps on 2,000 real MNIST digits, saved as safetensors."""
    (tmp_path / "user_models.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("user_models", None)


def train_user_net(shared_data, folder):
    sys.path.insert(0, str(folder))
    torch.manual_seed(0)  # the initial weights too: the net must not depend on what ran before
    try:
        net = importlib.import_module("user_models").build()
    finally:
        sys.path.remove(str(folder))
    train = data.load("mnist", root=shared_data, split="train")
    x = (train.images[:2000].float() / 255 - 0.1307) / 0.3081
    y = train.labels[:2000]
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(100):
        idx = torch.arange(step * 20, step * 20 + 20) % 2000
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    net.eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "net.safetensors")
    return net


def test_module_factory_with_weights_gives_the_trained_network(user_module, shared_data, mnist_batch):
    trained = train_user_net(shared_data, user_module)
    model = models.load("user_models:build", weights=user_module / "net.safetensors")
    assert model.input_shape == (1, 28, 28) and model.input_std == (0.3081,) and model.num_classes == 10
    assert fingerprint(model) == fingerprint(trained)
    x = (mnist_batch - 0.1307) / 0.3081
    assert torch.equal(
        odin_scores(model, x, 1000.0, 0.0014, input_std=model.input_std, normalise=False),
        odin_scores(trained, x, 1000.0, 0.0014, input_std=trained.input_std, normalise=False),
    )


@pytest.mark.parametrize(
    "spec,message",
    [
        ("no_such_module:build", "cannot import 'no_such_module'"),
        ("user_models:missing", "has no callable 'missing'"),
        ("user_models:not_a_model", "returned a str, not a torch.nn.Module"),
        ("user_models:broken", "the factory raised RuntimeError: no GPU found"),
    ],
)
def test_bad_factory_specs_fail_in_one_line(user_module, spec, message):
    with pytest.raises(ValueError, match=message) as info:
        models.load(spec)
    assert "\n" not in str(info.value)


def test_factory_weights_that_do_not_fit_are_refused(user_module):
    save_file({"body.0.weight": torch.zeros(3, 3)}, user_module / "wrong.safetensors")
    with pytest.raises(ValueError, match=r"does not match SmallNet.*missing keys"):
        models.load("user_models:build", weights=user_module / "wrong.safetensors")


def test_wrong_input_size_is_a_one_line_error_at_load(mnist_packages):
    for spec, kwargs in [
        ("mnist-mlp", {"input_shape": (3, 32, 32)}),
        (str(mnist_packages[1]["torchscript"]), {"input_shape": (1, 32, 32)}),
    ]:
        with pytest.raises(ValueError, match=r"does not take inputs of size .*32x32") as info:
            models.load(spec, **kwargs)
        assert "\n" not in str(info.value)


def test_program_exported_for_one_batch_size_is_refused_at_load(tmp_path):
    program = torch.export.export(models.load("mnist-mlp"), (torch.zeros(2, 1, 28, 28),))  # batch fixed to 2
    torch.export.save(program, str(tmp_path / "fixed.pt2"))
    with pytest.raises(ValueError, match=r"in a batch of 3 .*dynamic batch dimension") as info:
        models.load(tmp_path / "fixed.pt2", input_shape=(1, 28, 28))
    assert "\n" not in str(info.value)


def test_mean_and_std_must_match_the_channels():
    with pytest.raises(ValueError, match="input_std has 3 values but the input has 1 channels"):
        models.load("mnist-mlp", input_std=(0.2, 0.2, 0.2))


def test_unknown_spec_lists_the_forms():
    with pytest.raises(ValueError, match=r"neither a known model name.*torchvision:NAME.*package.module:factory"):
        models.load("resnet-1000")


def test_missing_packaged_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("nowhere.pt2")):
        models.load(tmp_path / "nowhere.pt2")


def test_packaged_archive_given_as_a_checkpoint_is_refused_not_run(mnist_packages, tmp_path):
    renamed = tmp_path / "looks-like-weights.pth"
    renamed.write_bytes(mnist_packages[1]["torchscript"].read_bytes())
    with pytest.raises(ValueError, match=r"is a torchscript archive, which runs code when loaded.*torchscript:"):
        models.load(renamed)
    with pytest.raises(ValueError, match=r"is not a torch.export program.*torchscript archive"):
        models.load(f"export:{renamed}")


def test_packaged_archives_refuse_separate_weights(mnist_packages, tmp_path):
    with pytest.raises(ValueError, match="carries its own weights"):
        models.load(mnist_packages[1]["export"], weights=tmp_path / "w.pth")


@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_library_specs_need_local_weights(library):
    with pytest.raises(ValueError, match=f"{library}:resnet18 needs weights=FILE.*never downloads"):
        models.load(f"{library}:resnet18")


@pytest.mark.skipif(importable("torchvision"), reason="torchvision imports here")
def test_torchvision_that_does_not_import_is_a_clear_error(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"torchvision:NAME needs torchvision, which (is not installed: pip install "
        r"'odin-ood\[torchvision\]'|is installed but does not import here)",
    ):
        models.load("torchvision:resnet18", weights=tmp_path / "w.pth")


@pytest.mark.libraries
@pytest.mark.skipif(not importable("torchvision"), reason="torchvision does not import beside this torch build")
def test_torchvision_architecture_with_local_weights_and_its_metadata(tmp_path):
    import torchvision

    reference = torchvision.models.get_model("resnet18", weights=None, num_classes=10).eval()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    model = models.load("torchvision:resnet18", weights=tmp_path / "r18.pth", num_classes=10)
    assert model.input_shape == (3, 224, 224)
    assert model.input_mean == pytest.approx((0.485, 0.456, 0.406)) and model.num_classes == 10
    x = torch.rand(2, 3, 224, 224)
    assert torch.equal(
        odin_scores(model, x, 1000.0, 0.0014, model.input_std, normalise=False),
        odin_scores(reference, x, 1000.0, 0.0014, model.input_std, normalise=False),
    )


@pytest.mark.libraries
@pytest.mark.skipif(not importable("timm"), reason="timm does not import beside this torch build")
def test_timm_architecture_with_local_weights_and_its_metadata(tmp_path):
    import timm

    reference = timm.create_model("resnet10t", pretrained=False, num_classes=10).eval()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, tmp_path / "r10t.safetensors")
    model = models.load("timm:resnet10t", weights=tmp_path / "r10t.safetensors", num_classes=10)
    config = timm.data.resolve_model_data_config(reference)
    assert model.input_shape == tuple(config["input_size"]) and model.input_std == pytest.approx(config["std"])
    x = torch.rand(2, *model.input_shape)
    assert torch.equal(
        odin_scores(model, x, 1000.0, 0.0014, model.input_std, normalise=False),
        odin_scores(reference, x, 1000.0, 0.0014, model.input_std, normalise=False),
    )


def test_library_spec_for_an_unknown_library_is_not_taken_for_a_factory():
    with pytest.raises(ValueError, match="cannot import 'keras'"):
        models.load("keras:resnet18")
