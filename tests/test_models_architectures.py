"""Architectures: parameter counts against the published figures, shapes, named configurations."""

from __future__ import annotations

import pytest
import torch

from odin_ood import models

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# Published parameter counts for 10 classes: DenseNet-BC-100 (k=12) per the checkpoint's README;
# CIFAR ResNets per Idelbayev's table (He et al. 2016: 0.27M ... 1.7M); WRNs per the PyTorch port
# (Zagoruyko & Komodakis 2016, Table 1: 36.5M and 8.9M).
PARAMS = {
    "densenet-bc-100": 769_162,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "wrn-28-10": 36_479_194,
    "wrn-40-4": 8_949_210,
    "mnist-mlp": 784 * 256 + 256 + 2 * (256 * 256 + 256) + 256 * 10 + 10,  # 335,114
    "mnist-lenet": (10 * 25 + 10) + (20 * 10 * 25 + 20) + (320 * 50 + 50) + (50 * 10 + 10),  # 21,840
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_matches_published(name):
    with torch.device("meta"):
        model = models.spec(name).builder(10)
    assert n_params(model) == PARAMS[name]


def test_names_cover_the_paper_and_common_checkpoints():
    assert set(models.names()) == set(PARAMS)


@pytest.mark.parametrize("name", ["densenet-bc-100", "resnet20", "mnist-mlp", "mnist-lenet"])
def test_build_sets_input_attributes_and_output_shape(name):
    model = models.build(name, num_classes=7).eval()
    x = torch.rand(2, *model.input_shape)
    assert model(x).shape == (2, 7)
    assert model.num_classes == 7 and model.arch == name
    assert len(model.input_mean) == len(model.input_std) == model.input_shape[0]


def test_wrn_40_4_forward_shape_and_widths():
    model = models.build("wrn-40-4").eval()
    assert model.fc.in_features == 256  # 64 * k
    assert len(model.block1.layer) == 6  # (40 - 4) / 6
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_wrn_28_10_structure():
    with torch.device("meta"):
        model = models.spec("wrn-28-10").builder(100)
    assert model.fc.in_features == 640 and model.fc.out_features == 100
    assert len(model.block3.layer) == 4


def test_densenet_bc_100_has_16_bottlenecks_per_block_and_342_final_channels():
    model = models.build("densenet-bc-100")
    assert len(model.block1.layer) == len(model.block3.layer) == 16
    assert model.fc.in_features == 342


def test_option_a_shortcut_is_parameter_free_subsample_and_zero_pad():
    block = models.build("resnet20").layer2[0]
    x = torch.randn(2, 16, 8, 8)
    s = block.shortcut(x)
    assert s.shape == (2, 32, 4, 4)
    assert torch.equal(s[:, 8:24], x[:, :, ::2, ::2])
    assert s[:, :8].abs().sum() == 0 and s[:, 24:].abs().sum() == 0


def test_mlp_is_hendrycks_and_gimpels_three_gelu_layers():
    model = models.build("mnist-mlp").double()
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)

    def gelu(u):  # the tanh approximation, written out as in their notebook
        return 0.5 * u * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (u + 0.044715 * u**3)))

    h = x.reshape(3, 784)
    for layer in (model.fc1, model.fc2, model.fc3):
        h = gelu(h @ layer.weight.T + layer.bias)
    assert torch.allclose(model(x), h @ model.fc4.weight.T + model.fc4.bias)


def test_mlp_initialisation_has_unit_rows_scaled_per_layer():
    torch.manual_seed(0)
    model = models.build("mnist-mlp")
    for layer, scale in zip((model.fc1, model.fc2, model.fc3, model.fc4), (1.425, 0.85, 0.85, 1.425), strict=True):
        norms = layer.weight.norm(dim=1)
        assert torch.allclose(norms, torch.full_like(norms, scale**-0.5), atol=1e-6)
        assert layer.bias.abs().sum() == 0


def test_lenet_layers_in_train_and_eval_mode():
    torch.manual_seed(0)
    model = models.build("mnist-lenet")
    x = torch.rand(4, 1, 28, 28)
    model.eval()
    h = torch.relu(torch.nn.functional.max_pool2d(model.conv1(x), 2))
    h = torch.relu(torch.nn.functional.max_pool2d(model.conv2(h), 2))
    ref = model.fc2(torch.relu(model.fc1(h.reshape(4, 320))))
    assert torch.allclose(model(x), ref, atol=1e-6)
    model.train()
    assert not torch.allclose(model(x), ref)  # dropout is active in training only


@pytest.mark.parametrize("name,depth", [("densenet-bc-100", 0), ("densenet-bc-100", 101)])
def test_bad_densenet_depth_is_rejected(name, depth):
    from odin_ood.models.densenet import DenseNetBC

    with pytest.raises(ValueError, match="6n\\+4"):
        DenseNetBC(depth=depth)


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown model name 'vgg16'.*densenet-bc-100"):
        models.build("vgg16")


def test_bad_num_classes_is_rejected():
    with pytest.raises(ValueError, match="num_classes"):
        models.build("resnet20", num_classes=1)
