"""The command line speaks command-line: every option of every subcommand has a help text,
``odin-ood --version`` answers, and errors raised below the CLI name ``--flags`` (``--weights
FILE``, ``--data-root DIR``) where the Python API names its arguments (``weights=PATH``)."""

from __future__ import annotations

import argparse
import json

import pytest

from odin_ood import Detector, __version__, models
from odin_ood.cli import build_parser, main


def every_action(parser: argparse.ArgumentParser, name: str = "odin-ood"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from every_action(subparser, sub)
        else:
            yield name, action


def test_every_option_of_every_subcommand_has_help():
    missing = [(name, a.option_strings or a.dest) for name, a in every_action(build_parser()) if not a.help]
    assert missing == []


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"odin-ood {__version__}"


@pytest.mark.parametrize(
    "argv,flag,python",
    [
        (
            ["score", "--model", "densenet-bc-100", "--detector", "d", "--output", "o.csv", "x"],
            "--weights FILE",
            "weights=",
        ),
        (
            ["score", "--model", "torchvision:resnet18", "--detector", "d", "--output", "o.csv", "x"],
            "--weights FILE",
            "weights=",
        ),
    ],
    ids=["zoo without weights", "torchvision without weights"],
)
def test_model_errors_name_the_flags(capsys, argv, flag, python):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err and python not in err and err.count("\n") == 1, err


def test_a_missing_data_root_names_the_flag(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("ODIN_OOD_DATA", raising=False)
    det = Detector(models.load("mnist-lenet"))
    det._set_fitted(1000.0, 0.0, 0.2, 0.95)
    det.save(tmp_path)
    assert (
        main(
            [
                "score",
                "--model",
                "mnist-lenet",
                "--detector",
                str(tmp_path),
                "--output",
                str(tmp_path / "o.csv"),
                "mnist",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "pass --data-root DIR" in err and "root=" not in err, err


def test_the_python_api_keeps_python_wording():
    with pytest.raises(ValueError, match=r"weights=PATH"):
        models.load("densenet-bc-100")


def test_a_fingerprint_mismatch_quotes_both_fingerprints_whole(capsys, tmp_path):
    det = Detector(models.load("mnist-lenet"))
    det._set_fitted(1000.0, 0.0, 0.2, 0.95)
    det.save(tmp_path)
    assert (
        main(["score", "--model", "mnist-mlp", "--detector", str(tmp_path), "--output", str(tmp_path / "o.csv"), "x"])
        == 2
    )
    err = capsys.readouterr().err
    fitted = json.loads((tmp_path / "detector.json").read_text())["model_fingerprint"]
    assert f"weights {fitted!r}, but" in err and err.replace("model's", "").count("'") == 4, err
    assert "pass the --model and --weights it was fitted with" in err


def test_a_fingerprint_mismatch_names_the_model_the_detector_was_fitted_with(capsys, tmp_path):
    """detector.json records how its model was loaded ("model", "weights": fit writes them), and the
    mismatch error names it in the words of whoever reads it; a file without them loads as before,
    and a record that is not text is a corrupt file."""
    det = Detector(models.load("mnist-lenet"))
    det._set_fitted(1000.0, 0.0, 0.2, 0.95)
    det.model_spec_, det.weights_spec_ = "mnist-lenet", "lenet.safetensors"
    det.save(tmp_path)
    saved = json.loads((tmp_path / "detector.json").read_text())
    assert (saved["model"], saved["weights"]) == ("mnist-lenet", "lenet.safetensors")
    assert (
        main(["score", "--model", "mnist-mlp", "--detector", str(tmp_path), "--output", str(tmp_path / "o.csv"), "x"])
        == 2
    )
    err = capsys.readouterr().err
    assert "was fitted for --model mnist-lenet --weights lenet.safetensors with weights 'sha256:" in err, err
    with pytest.raises(ValueError, match=r"fitted for the model 'mnist-lenet' \(weights='lenet.safetensors'\) with"):
        Detector.load(tmp_path, models.load("mnist-mlp"))
    loaded = Detector.load(tmp_path, models.load("mnist-lenet"))
    assert (loaded.model_spec_, loaded.weights_spec_) == ("mnist-lenet", "lenet.safetensors")
    for key in ("model", "weights"):
        del saved[key]
    (tmp_path / "detector.json").write_text(json.dumps(saved))
    assert Detector.load(tmp_path, models.load("mnist-lenet")).model_spec_ is None  # written before it was recorded
    (tmp_path / "detector.json").write_text(json.dumps({**saved, "model": ["mnist-lenet"]}))
    with pytest.raises(ValueError, match="corrupt odin-ood detector file: model must be a string"):
        Detector.load(tmp_path, models.load("mnist-lenet"))
