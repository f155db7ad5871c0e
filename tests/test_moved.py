"""The module paths of before the core was grouped into packages import for one release, with a
DeprecationWarning naming the new path, and give the very objects of their new homes; the public
names and the packages that kept their names import without a warning."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import odin_ood
from odin_ood._moved import MOVED

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_naming_the_new_one_and_gives_the_same_objects(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated .* import from {MOVED[old][0]}"):
        module = importlib.import_module(old)
    first, *rest = (importlib.import_module(home) for home in MOVED[old])
    assert all(getattr(module, k) is v for k, v in vars(first).items() if not k.startswith("__"))
    for home in rest:  # a name two homes define comes from the first
        assert all(hasattr(module, k) for k in vars(home) if not k.startswith("__"))
    sys.modules.pop(old, None)


def test_the_old_names_of_the_search_modules_come_from_one_definition():
    with pytest.warns(DeprecationWarning):
        from odin_ood.search import SEARCHES as halving_searches
        from odin_ood.shared_search import SEARCHES as shared_searches
        from odin_ood.shared_search import Cell
    from odin_ood.tuning import SEARCHES
    from odin_ood.tuning import Cell as one_cell

    assert halving_searches is shared_searches is SEARCHES and set(SEARCHES) == {"grid", "shared", "halving"}
    assert Cell is one_cell


def test_odin_ood_fingerprint_stays_the_function_after_the_old_submodule_is_imported():
    """``odin_ood.fingerprint`` is a public function whose old module had the same name: importing
    the old module binds it on the package, and it still fingerprints."""
    code = (
        "import warnings, torch; warnings.simplefilter('ignore', DeprecationWarning)\n"
        "import odin_ood; f = odin_ood.fingerprint\n"
        "import odin_ood.fingerprint\n"
        "from odin_ood.detector.fingerprint import fingerprint\n"
        "m = torch.nn.Linear(2, 2)\n"
        "assert odin_ood.fingerprint(m) == f(m) == fingerprint(m), 'differs'\n"
        "from odin_ood.fingerprint import computation\n"
        "print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}, timeout=300
    )
    assert out.stdout.strip() == "ok", out.stderr


def test_the_public_names_and_kept_package_paths_import_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in odin_ood.__all__:
            assert getattr(odin_ood, name) is not None
        kept = {
            "odin_ood": ["Detector", "msp_scores", "odin_scores", "tune"],
            "odin_ood.data": ["load"],
            "odin_ood.detector": ["Detector"],
            "odin_ood.metrics": ["evaluate"],
            "odin_ood.models": ["load"],
            "odin_ood.preprocess": ["Preprocessing", "of_model"],
            "odin_ood.scores": ["odin_grid_scores", "perturb", "scoring_mode"],
            "odin_ood.tuning": ["PAPER_EPSILONS", "TuningResult", "tune_from_scores"],
        }
        found = {
            module: [getattr(importlib.import_module(module), name) for name in names] for module, names in kept.items()
        }
    assert found["odin_ood"][2] is odin_ood.odin_scores and found["odin_ood.detector"][0] is found["odin_ood"][0]


def test_the_package_root_holds_entry_points_not_machinery():
    root = SRC / "odin_ood"
    modules = sorted(p.name for p in root.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "_moved.py", "_version.py", "cli.py", "demo.py"]
    too_long = {str(p.relative_to(root)): n for p in root.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert too_long == {}
