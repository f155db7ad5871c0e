"""Memory bounded in bytes (odin_ood.scores.memory): sizes parsed as written, chunk and batch sizes
worked by hand from the budget, a working set that grows with the pixels, and fit refusing
inputs over the budget in one line before reading them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from odin_ood.cli import main
from odin_ood.scores import memory


@pytest.mark.parametrize(
    "text,value",
    [
        ("1GiB", 1 << 30),
        ("512MiB", 512 << 20),
        ("2G", 2 * 10**9),
        ("1500000", 1500000),
        ("1.5 KiB", 1536),
        ("4gb", 4 * 10**9),
    ],
)
def test_sizes_parse_as_written(text, value):
    assert memory.parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1 GiBs", "-5", "0"])
def test_bad_sizes_say_what_is_expected(text):
    with pytest.raises(ValueError, match=r"1GiB|at least 1 byte"):
        memory.parse_bytes(text)


def test_chunk_sizes_by_hand():
    # 224 px RGB: 602,112 bytes per float32 input, two copies held: 1 GiB / 2 / 1,204,224 = 445.8
    assert memory.chunk_for((3, 224, 224), 1 << 30, batch=1) == 445
    assert memory.chunk_for((3, 224, 224), 1 << 30, batch=11) == 440  # whole batches: 40 * 11
    assert memory.chunk_for((1, 28, 28), 1 << 30, batch=128) == 4096  # the cap binds at 28 px
    assert memory.chunk_for((3, 224, 224), 1000, batch=8) == 8  # never less than one batch


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


def test_working_set_grows_with_the_pixels_and_sets_the_batch():
    torch.manual_seed(0)
    net = _Net().eval()
    small, large = memory.working_bytes(net, (3, 32, 32)), memory.working_bytes(net, (3, 64, 64))
    # autograd keeps each conv's input and each ReLU's output: (3 + 16 + 16 + 16) channels of
    # H x W floats at least, per image
    assert small >= 4 * 51 * 32 * 32 and large >= 4 * 51 * 64 * 64
    assert 3.5 < large / small < 4.5
    assert memory.batch_for(net, (3, 64, 64), 1 << 30) == min(128, (1 << 30) // 2 // large)
    assert memory.batch_for(net, (3, 64, 64), 2 * large * 5) == 5


def test_fit_refuses_inputs_over_the_budget_before_reading(shared_data, tmp_path, capsys):
    code = main(
        [
            "fit",
            "--model",
            "mnist-mlp",
            "--id",
            "mnist",
            "--ood",
            "notmnist",
            "--out",
            str(tmp_path / "d"),
            "--data-root",
            str(shared_data),
            "--max-memory",
            "10MiB",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    # 20,000 images x 2 copies x 3,136 bytes = 119.6 MiB; half of 10 MiB holds 5,242,880 / (2 x 6,272) = 417 a side
    assert "fit holds its 20000 images decoded: 119.6 MiB at 1x28x28, over half of --max-memory (10.0 MiB)" in err
    assert "pass --limit 417 or --max-memory 1GiB" in err
    assert not (tmp_path / "d").exists()


def test_a_size_of_400_digits_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"at most 1 PiB"):
        memory.parse_bytes("9" * 400)
    assert memory.parse_bytes("1024TiB") == 1 << 50
    with pytest.raises(SystemExit) as e:
        main(
            [
                "score",
                "mnist",
                "--output",
                str(tmp_path / "s.csv"),
                "--detector",
                "d",
                "--model",
                "mnist-mlp",
                "--max-memory",
                "9" * 400 + "GiB",
            ]
        )
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --max-memory: a memory size must be at most 1 PiB" in err, err
    assert "Traceback" not in err


def _one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_sizes_a_flag_states_are_bounded_before_the_model_runs_on_them(shared_data, tmp_path, capsys):
    fit = [
        "fit",
        "--model",
        "mnist-mlp",
        "--id",
        "mnist",
        "--ood",
        "notmnist",
        "--out",
        str(tmp_path / "d"),
        "--data-root",
        str(shared_data),
        "--limit",
        "20",
        "--quiet",
    ]
    err = _one_line_error([*fit, "--resize", "squash", "--resize-size", "65536"], capsys)
    assert "resize_size" in err and "PIL's pixel limit" in err
    err = _one_line_error([*fit, "--resize", "squash", "--resize-size", "5000"], capsys)
    assert "resize_size 5000x5000 is over the limit of 4096 pixels a side (--max-side)" in err
    err = _one_line_error(
        [
            "score",
            "mnist",
            "--output",
            str(tmp_path / "s.csv"),
            "--detector",
            "d",
            "--model",
            "mnist-mlp",
            "--input-size",
            f"1,{10**400},28",
        ],
        capsys,
    )
    assert "--input-size" in err
    assert not (tmp_path / "d").exists() and not (tmp_path / "s.csv").exists()


def test_a_detector_files_batch_size_is_clamped_to_the_budget_with_a_note(shared_data, tmp_path, capsys):
    """A batch_size of 65536 in the file, --max-memory 64MiB: score says so on stderr and scores in
    batches that fit, each row equal to the library's in batches of that size."""
    import json

    from odin_ood.commands.row_files import read_rows
    from serving_support import fit_mnist_detector, library_outputs

    det, mnist, _ = fit_mnist_detector(shared_data, tmp_path / "det", batch_size=8)
    path = tmp_path / "det" / "detector.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "batch_size": 65536}))
    budget = 64 << 20
    fits = budget // 2 // memory.working_bytes(det.model, (1, 28, 28))
    assert 1 < fits < 65536
    code = main(
        [
            "score",
            "mnist",
            "--output",
            str(tmp_path / "s.jsonl"),
            "--detector",
            str(path),
            "--model",
            "mnist-mlp",
            "--data-root",
            str(shared_data),
            "--max-memory",
            "64MiB",
            "--threads",
            "1",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"batch_size 65536 does not fit in half of --max-memory (32.0 MiB): scoring in batches of {fits}" in err
    rows = list(read_rows(tmp_path / "s.jsonl"))
    det.batch_size = fits
    want = library_outputs(det, mnist.images[:300].float() / 255)
    assert [(r["predicted_class"], r["score"]) for r in rows[:300]] == list(
        zip(want["predicted_class"], want["score"], strict=True)
    )


class _NoGradient(nn.Module):
    """Scores under no_grad: MSP gates it, ODIN's probe cannot take an input gradient through it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        with torch.no_grad():
            return self.fc(x.flatten(1))


def test_the_batch_clamp_bounds_a_model_without_input_gradient_by_its_least_working_set(capsys):
    from odin_ood import Detector
    from odin_ood.commands.loading import bounded_batch

    det = Detector(_NoGradient().eval(), score_family="msp", input_shape=(1, 2, 2), batch_size=65536)
    det._set_fitted(1.0, 0.0, 0.5, 0.95)
    # 16 bytes per input, 38 copies: 608 bytes; a 64 KiB budget holds 107
    assert bounded_batch(det, (1, 2, 2), 64 << 10) == (64 << 10) // 608 == 107
    assert "scoring in batches of 107" in capsys.readouterr().err
    det.batch_size = 100
    assert bounded_batch(det, (1, 2, 2), 64 << 10) == 100
