"""The model options ``fit``, ``score`` and ``serve`` share: one parser, one frozen ModelOptions."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from odin_ood.cli import build_parser
from odin_ood.commands.options import ModelOptions, floats_arg, ints_arg

FLAGS = [
    "--model",
    "net.pt2",
    "--input-size",
    "3,32,32",
    "--input-mean",
    "0.5,0.4,0.3",
    "--input-std",
    "0.2",
    "--device",
    "cpu",
    "--batch-size",
    "16",
    "--resize",
    "squash",
    "--interpolation",
    "bicubic",
    "--resize-size",
    "40,36",
    "--max-side",
    "512",
    "--threads",
    "2",
]
COMMANDS = {
    "fit": ["fit", "--id", "x/", "--out", "det/"],
    "score": ["score", "x/", "--output", "s.csv", "--detector", "d/"],
    "serve": ["serve", "--detector", "d/"],
}


def test_fit_score_and_serve_build_the_same_options_from_the_same_flags():
    parser = build_parser()
    built = {name: ModelOptions.from_args(parser.parse_args([*head, *FLAGS])) for name, head in COMMANDS.items()}
    want = ModelOptions(
        "net.pt2", None, (3, 32, 32), (0.5, 0.4, 0.3), (0.2,), "cpu", 16, "squash", "bicubic", (40, 36), 512, 2
    )
    assert built == {name: want for name in COMMANDS}
    with pytest.raises(dataclasses.FrozenInstanceError):
        want.model = "other"


@pytest.mark.parametrize("text", ["28x28", "3,0,32", "a"])
def test_bad_sizes_are_argument_errors(text):
    with pytest.raises(argparse.ArgumentTypeError):
        ints_arg(text)


@pytest.mark.parametrize("text", ["nan", "0.5,inf", "x"])
def test_bad_numbers_are_argument_errors(text):
    with pytest.raises(argparse.ArgumentTypeError):
        floats_arg(text)


@pytest.mark.parametrize(
    "field,value,message",
    [("batch_size", 0, "--batch-size"), ("threads", 0, "--threads"), ("max_side", 0, "--max-side")],
)
def test_out_of_range_options_name_the_flag(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelOptions("mnist-mlp", **{field: value})


def test_checkpoint_key_mapping_flags_reach_the_options_of_every_command():
    parser = build_parser()
    flags = [
        "--model",
        "densenet-bc-100",
        "--weights",
        "w.pt",
        "--strip-prefix",
        "encoder.",
        "--strip-prefix",
        "net.",
        "--rename-key",
        "output_layer=fc",
    ]
    for head in COMMANDS.values():
        options = ModelOptions.from_args(parser.parse_args([*head, *flags]))
        assert options.strip_prefixes == ("encoder.", "net.") and options.rename_keys == (("output_layer", "fc"),)
    with pytest.raises(SystemExit):
        parser.parse_args([*COMMANDS["score"], *flags, "--rename-key", "output_layer"])
