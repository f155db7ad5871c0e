"""Nothing odin-ood writes goes through a symbolic link (odin_ood._utils.files): a link planted at
the target is refused and the file it points to stays as it was; one planted at the temporary name
the old code used is never touched."""

from __future__ import annotations

import json
import os
import re

import pytest

from odin_ood import Detector, models
from odin_ood._utils.files import write_file
from odin_ood.cli import main

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")


@pytest.fixture()
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("precious\n")
    return path


@pytest.fixture(scope="module")
def fitted():
    det = Detector(models.load("mnist-mlp"), input_shape=(1, 28, 28))
    det._set_fitted(1000.0, 0.0014, 0.1, 0.95)  # a fitted state without tuning
    return det


def test_detector_save_refuses_a_link_at_the_file_and_writes_nothing_through_it(fitted, tmp_path, victim):
    out = tmp_path / "det"
    out.mkdir()
    (out / "detector.json").symlink_to(victim)
    with pytest.raises(
        ValueError, match=re.escape("detector.json is a symbolic link: odin-ood never writes through one")
    ):
        fitted.save(out)
    assert victim.read_text() == "precious\n" and os.path.islink(out / "detector.json")
    assert sorted(p.name for p in out.iterdir()) == ["detector.json"]  # no temporary left behind


def test_detector_save_never_opens_a_link_planted_at_a_temporary_name(fitted, tmp_path, victim):
    out = tmp_path / "det"
    out.mkdir()
    (out / "detector.json.tmp").symlink_to(victim)  # the name the old save wrote through
    target = fitted.save(out)
    assert victim.read_text() == "precious\n"
    assert json.loads(target.read_text())["threshold"] == 0.1 and not os.path.islink(target)


def test_write_file_replaces_a_regular_file_whole_and_refuses_a_folder(tmp_path):
    target = tmp_path / "a" / "report.html"
    write_file(target, "old")
    write_file(target, "new é")
    assert target.read_bytes() == "new é".encode() and os.listdir(target.parent) == ["report.html"]
    with pytest.raises(ValueError, match="is not a regular file: not a file odin-ood wrote: not touched"):
        write_file(tmp_path / "a", b"x")


def test_fit_refuses_a_link_at_fit_json_and_writes_nothing_through_it(tmp_path, victim, shared_data):
    out = tmp_path / "det"
    out.mkdir()
    (out / "fit.json").symlink_to(victim)
    code = main(
        [
            "fit",
            "--model",
            "mnist-mlp",
            "--id",
            "mnist",
            "--ood",
            "notmnist",
            "--data-root",
            str(shared_data),
            "--limit",
            "64",
            "--holdout",
            "0",
            "--temperatures",
            "1",
            "--epsilons",
            "0",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 2 and victim.read_text() == "precious\n" and os.path.islink(out / "fit.json")
