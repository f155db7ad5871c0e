"""Recognising a zoo checkpoint from its keys and shapes builds only the candidates whose
classifier and number of tensors fit (one network for the zoo's checkpoints), and still tells an
unrecognised or ambiguous checkpoint apart with the same message."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
import torch

from odin_ood import models
from odin_ood.models import zoo

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("name", zoo.names())
def test_spec_tensor_count_is_the_networks_state_dict(name):
    with torch.device("meta"):
        state = zoo.spec(name).builder(zoo.spec(name).num_classes).state_dict()
    assert zoo.spec(name).tensors == sum(not k.endswith("num_batches_tracked") for k in state)


@pytest.fixture
def built(monkeypatch) -> Counter:
    """Counts the networks each zoo architecture's builder constructs."""
    counts: Counter = Counter()
    for name in zoo.names():
        s = zoo.spec(name)

        def counting(classes, builder=s.builder, name=name):
            counts[name] += 1
            return builder(classes)

        monkeypatch.setitem(zoo._SPECS, name, dataclasses.replace(s, builder=counting))
    return counts


@pytest.mark.parametrize(
    "file, arch, classes",
    [("resnet20-cifar10.th", "resnet20", 10), ("densenet-bc-100-cifar100.pth.tar", "densenet-bc-100", 100)],
)
def test_loading_a_checkpoint_by_its_keys_builds_one_network(shared_data, built, file, arch, classes):
    path = shared_data / "models" / file
    model = models.load(path)
    assert built == {arch: 1}
    assert (model.arch, model.num_classes) == (arch, classes)
    named = models.load(arch, weights=path)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model(x), named(x))


def test_an_mlp_checkpoint_also_builds_lenet_whose_classifier_name_it_shares(tmp_path, built):
    torch.manual_seed(0)
    mlp = zoo.build("mnist-mlp").eval()
    torch.save(mlp.state_dict(), tmp_path / "mlp.pth")  # no safetensors metadata naming the architecture
    built.clear()
    loaded = models.load(tmp_path / "mlp.pth")
    assert loaded.arch == "mnist-mlp"
    assert built == {"mnist-mlp": 1, "mnist-lenet": 1}  # fc2 is LeNet's head, a hidden layer of the MLP
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded(x), mlp(x))


def test_same_count_but_another_shape_is_not_recognised(shared_data, tmp_path, built):
    state = models.read_state_dict(shared_data / "models" / "resnet20-cifar10.th")
    state["layer2.0.conv1.weight"] = torch.zeros(32, 16, 5, 5)  # a 5x5 kernel where ResNet-20 has 3x3
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"cannot tell the architecture of .*odd\.pth from its keys \(matches: none\)"):
        models.load(tmp_path / "odd.pth")
    assert built == {"resnet20": 1}


def test_two_architectures_with_the_same_keys_and_shapes_are_ambiguous(shared_data, monkeypatch):
    monkeypatch.setitem(zoo._SPECS, "resnet20-twin", dataclasses.replace(zoo.spec("resnet20"), name="resnet20-twin"))
    with pytest.raises(ValueError, match=r"matches: \['resnet20', 'resnet20-twin'\]\); call load\(NAME"):
        models.load(shared_data / "models" / "resnet20-cifar10.th")
