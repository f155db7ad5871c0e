import pytest

from odin_ood.cli import main
from odin_ood.data import describe, load, names

PAPER_SETS = [
    "mnist",
    "notmnist",
    "omniglot",
    "cifar10",
    "cifar10-jpeg",
    "cifar10-lossless-1000",
    "cifar100",
    "cifar80",
    "cifar20",
    "tinyimagenet-crop",
    "tinyimagenet-resize",
    "lsun-crop",
    "lsun-resize",
    "isun",
    "gaussian",
    "uniform",
    "cifar10bw",
]


def test_every_paper_set_is_registered():
    assert set(PAPER_SETS) <= set(names())
    assert all(describe(n) for n in names())


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match=r"unknown dataset 'svhn'.*mnist"):
        load("svhn", root=".")


def test_cli_lists_datasets_with_whole_reasons(capsys, shared_data, monkeypatch):
    """``odin-ood datasets --root``: each dataset's status under its line, the reason it does not
    load given whole (wrapped at spaces, never cut inside a word or a path)."""
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["datasets", "--root", str(shared_data)]) == 0
    out = capsys.readouterr().out
    blocks: dict[str, list[str]] = {}
    for line in out.splitlines():
        if not line.startswith(" "):
            blocks[line.split()[0]] = [line]
        else:
            blocks[list(blocks)[-1]].append(line)
    assert set(PAPER_SETS) <= set(blocks)
    status = {name: " ".join(part.strip() for part in lines[1:]) for name, lines in blocks.items()}
    assert status["cifar10-lossless-1000"] == "ok: 1000 x 3x32x32"
    with pytest.raises(FileNotFoundError) as exc:
        load("isun", root=shared_data)
    reason = str(exc.value).splitlines()[0]
    assert len(reason) > 80 and status["isun"] == f"unavailable: {reason}"  # longer than a line, and whole
    assert all(len(line) <= 80 or " " not in line.strip() for line in out.splitlines() if line.startswith(" "))
