import pytest

from odin_ood.cli import main
from odin_ood.data import describe, load, names

PAPER_SETS = ["mnist", "notmnist", "omniglot", "cifar10", "cifar10-jpeg", "cifar10-lossless-1000",
              "cifar100", "cifar80", "cifar20", "tinyimagenet-crop", "tinyimagenet-resize",
              "lsun-crop", "lsun-resize", "isun", "gaussian", "uniform", "cifar10bw"]


def test_every_paper_set_is_registered():
    assert set(PAPER_SETS) <= set(names())
    assert all(describe(n) for n in names())


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="unknown dataset 'svhn'.*mnist"):
        load("svhn", root=".")


def test_cli_lists_datasets(capsys, shared_data):
    assert main(["datasets", "--root", str(shared_data)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert set(PAPER_SETS) <= set(lines)
    assert "ok: 1000 x 3x32x32" in lines["cifar10-lossless-1000"]
    assert "unavailable" in lines["isun"] and "iSUN/iSUN_patches" in lines["isun"]
