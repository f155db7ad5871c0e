"""odin_ood._utils.extras and ``odin-ood doctor``: every path a user takes that needs an optional package ends,
when that package is missing, in ONE line naming the extra to install (exit status 2, no
traceback); ``odin-ood --help`` and ``odin-ood doctor`` say which extras are installed.

Absence is simulated as Python itself sees it: ``sys.modules[name] = None`` makes ``import name``
raise ModuleNotFoundError and ``importlib.util.find_spec(name)`` answer None. In this process
(monkeypatch) for every path, and in a fresh interpreter through a ``sitecustomize`` for the
entry point ``python -m odin_ood`` itself."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odin_ood import Detector, models
from odin_ood._utils import extras
from odin_ood.cli import main

ROOT = Path(__file__).resolve().parents[1]
MULTIPART = ("python_multipart", "multipart")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A detector for mnist-lenet, a folder of one image, and stand-ins for the files a model
    source or input format reads (never read: the missing package is named first)."""
    root = tmp_path_factory.mktemp("extras")
    det = Detector(models.load("mnist-lenet"))
    det._set_fitted(1000.0, 0.0, 0.2, 0.95)
    det.save(root / "det")
    (root / "images").mkdir()
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype("uint8")).save(root / "images" / "a.png")
    (root / "w.pth").write_bytes(b"")
    (root / "model.onnx").write_bytes(b"")
    (root / "in.parquet").write_bytes(b"")
    (root / "hf").mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (root / "hf" / name).write_text("{}")
    return root


def score(files, *args, inputs=("images",), output="o.csv"):
    return [
        "score",
        *(str(files / i) for i in inputs),
        "--detector",
        str(files / "det"),
        "--output",
        str(files / "out" / output),
        *args,
    ]


# (what the user runs, the modules missing, the extra the line must name)
PATHS = {
    "serve without uvicorn": (
        lambda f: ["serve", "--detector", str(f / "det"), "--model", "mnist-lenet", "--no-auth"],
        ("uvicorn",),
        "serve",
    ),
    "serve without fastapi": (
        lambda f: ["serve", "--detector", str(f / "det"), "--model", "mnist-lenet", "--no-auth"],
        ("fastapi",),
        "serve",
    ),
    "serve without python-multipart": (
        lambda f: ["serve", "--detector", str(f / "det"), "--model", "mnist-lenet", "--no-auth"],
        MULTIPART,
        "serve",
    ),
    "score --runtime onnxruntime": (
        lambda f: score(f, "--model", "mnist-lenet", "--runtime", "onnxruntime"),
        ("onnxruntime",),
        "onnxruntime",
    ),
    "score --runtime onnxruntime without onnx": (
        lambda f: score(f, "--model", "mnist-lenet", "--runtime", "onnxruntime"),
        ("onnx",),
        "onnxruntime",
    ),
    "score --runtime openvino": (
        lambda f: score(f, "--model", "mnist-lenet", "--runtime", "openvino"),
        ("openvino",),
        "openvino",
    ),
    "export without onnx": (
        lambda f: [
            "export",
            "--detector",
            str(f / "det"),
            "--model",
            "mnist-lenet",
            "--out",
            str(f / "out" / "g.onnx"),
        ],
        ("onnx",),
        "onnx",
    ),
    "export without onnxscript": (
        lambda f: [
            "export",
            "--detector",
            str(f / "det"),
            "--model",
            "mnist-lenet",
            "--out",
            str(f / "out" / "g.onnx"),
        ],
        ("onnxscript",),
        "onnx",
    ),
    "torchvision model": (
        lambda f: score(f, "--model", "torchvision:resnet18", "--weights", str(f / "w.pth")),
        ("torchvision",),
        "torchvision",
    ),
    "timm model": (
        lambda f: [
            "fit",
            "--id",
            str(f / "images"),
            "--out",
            str(f / "out" / "fit"),
            "--model",
            "timm:resnet18",
            "--weights",
            str(f / "w.pth"),
        ],
        ("timm",),
        "timm",
    ),
    "hf model": (
        lambda f: ["fit", "--id", str(f / "images"), "--out", str(f / "out" / "fit"), "--model", f"hf:{f / 'hf'}"],
        ("transformers",),
        "hf",
    ),
    "onnx model without onnx2torch": (
        lambda f: score(f, "--model", f"onnx:{f / 'model.onnx'}"),
        ("onnx2torch",),
        "onnx2torch",
    ),
    "score --engine ray": (lambda f: score(f, "--model", "mnist-lenet", "--engine", "ray"), ("ray",), "ray"),
    "score --output *.parquet": (
        lambda f: score(f, "--model", "mnist-lenet", output="o.parquet"),
        ("pyarrow",),
        "parquet",
    ),
    "score a Parquet input": (
        lambda f: score(f, "--model", "mnist-lenet", inputs=("in.parquet",)),
        ("pyarrow",),
        "parquet",
    ),
}


@pytest.mark.parametrize("path", PATHS)
def test_a_missing_optional_package_is_one_line_naming_its_extra(path, files, monkeypatch, capsys):
    argv, blocked, extra = PATHS[path]
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)
    assert main(argv(files)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pip install 'odin-ood[{extra}]'" in err and "Traceback" not in err, err
    assert f"needs {'python-multipart' if blocked == MULTIPART else blocked[0]}, which is not installed" in err, err
    assert not (files / "out").exists()  # refused before anything was written


def blocked_interpreter(tmp_path: Path, blocked: tuple[str, ...]) -> dict[str, str]:
    """The environment of a fresh ``python`` in which ``blocked`` modules are missing (a
    ``sitecustomize`` sets them to None in sys.modules before anything runs)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(f"import sys\nfor _name in {blocked!r}:\n    sys.modules[_name] = None\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")])}


@pytest.mark.parametrize("path", ["serve without uvicorn", "export without onnx", "torchvision model"])
def test_the_entry_point_prints_one_line_and_no_traceback(path, files, tmp_path):
    argv, blocked, extra = PATHS[path]
    proc = subprocess.run(
        [sys.executable, "-m", "odin_ood", *argv(files)],
        capture_output=True,
        text=True,
        env=blocked_interpreter(tmp_path, blocked),
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and f"pip install 'odin-ood[{extra}]'" in proc.stderr, proc.stderr


def test_any_other_missing_module_of_an_extra_is_one_line_too(monkeypatch, capsys, tmp_path):
    """A ModuleNotFoundError that no require() foresaw (here: pyarrow, raised inside ``demo``) is
    turned into the same line by the command line; a module of no extra is a bug: its traceback stays."""
    import odin_ood.demo

    def missing(name):
        def run(args):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        return run

    monkeypatch.setattr(odin_ood.demo, "run", missing("pyarrow.lib"))
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err == (
        "odin-ood demo: error: odin-ood demo needs pyarrow, which is not installed: pip install 'odin-ood[parquet]'\n"
    )
    monkeypatch.setattr(odin_ood.demo, "run", missing("no_such_module"))
    with pytest.raises(ModuleNotFoundError):
        main(["demo", "--out", str(tmp_path / "d")])


def test_the_extras_are_those_of_pyproject():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def name(requirement: str) -> str:
        return requirement.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()

    assert {e: sorted(map(name, r)) for e, r in declared.items() if e != "dev"} == {
        e: sorted(packages) for e, (packages, _) in extras.EXTRAS.items()
    }


def test_help_and_doctor_say_which_extras_are_installed(tmp_path):
    """In an interpreter without uvicorn and torchvision: ``--help`` lists serve and torchvision as
    not installed, ``doctor`` says what each lacks and gives the versions of what is there."""
    env = {**blocked_interpreter(tmp_path, ("uvicorn", "torchvision")), "ODIN_OOD_DATA": str(tmp_path)}
    helped = subprocess.run(
        [sys.executable, "-m", "odin_ood", "--help"], capture_output=True, text=True, env=env, timeout=300, check=True
    ).stdout
    line = helped.strip().splitlines()[-1]
    have, lack = line.split("; not installed: ")
    assert "serve" in lack and "torchvision" in lack and "serve" not in have and "doctor" in helped
    report = subprocess.run(
        [sys.executable, "-m", "odin_ood", "doctor"], capture_output=True, text=True, env=env, timeout=300, check=True
    ).stdout
    rows = {r.split()[0]: r for r in report.splitlines() if r.startswith("  ")}
    assert set(rows) == set(extras.EXTRAS)
    assert "lacks uvicorn): pip install 'odin-ood[serve]'" in rows["serve"]
    assert "lacks torchvision): pip install 'odin-ood[torchvision]'" in rows["torchvision"]
    import torch

    assert f"torch {torch.__version__}; --device auto runs on" in report
    assert f"data root ($ODIN_OOD_DATA): {tmp_path} (a folder" in report
    for extra, (packages, _) in extras.EXTRAS.items():
        if extra not in ("serve", "torchvision") and not extras.missing(extra):
            assert rows[extra].endswith("installed: " + ", ".join(f"{p} {extras.version(p)}" for p in packages))
