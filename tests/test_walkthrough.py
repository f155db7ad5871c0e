"""The README's command-line walk-through, run as written: ``odin-ood fit`` -> ``score`` -> ``serve``
on a user's own model (a small conv net trained here on real MNIST digits and exported with
torch.export as ``my_model.pt2``) and folders of real PNG files."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import torch

from odin_ood import Detector, data, models
from odin_ood.commands.row_files import read_rows
from serving_support import decoded, encode, env, library_outputs, start_server, stop_server
from test_models_sources import USER_MODULE, export_program, train_user_net

pytestmark = pytest.mark.usefixtures("torch_one_thread")

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> dict[str, list[str]]:
    """The ``odin-ood`` commands of the first bash block under "## Use it", by subcommand."""
    section = README.read_text().split("## Use it", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    commands = [shlex.split(line) for line in block.splitlines() if line.startswith("odin-ood ")]
    return {c[1]: c[2:] for c in commands}


def readme_api_key() -> str:
    """The key the walk-through exports before ``odin-ood serve``."""
    return re.search(r"export ODIN_OOD_API_KEY=(\S+)", README.read_text().split("## Use it", 1)[1]).group(1)


def test_the_readme_has_the_three_commands():
    assert list(readme_commands()) == ["fit", "score", "serve"]


@pytest.fixture(scope="module")
def user_folder(shared_data, tmp_path_factory):
    """What the README's commands expect to find: my_model.pt2, my_val_images/, other_images/,
    new_images/ (unseen digits and letters)."""
    root = tmp_path_factory.mktemp("walkthrough")
    (root / "user_models.py").write_text(textwrap.dedent(USER_MODULE))
    net = train_user_net(shared_data, root)
    sys.modules.pop("user_models", None)
    export_program(net, root / "my_model.pt2", (1, 28, 28))
    digits = data.load("mnist", root=shared_data).images[:, 0].numpy()
    letters = data.load("notmnist", root=shared_data).images[:, 0].numpy()
    for folder, images in (
        ("my_val_images", digits[:100]),
        ("other_images", letters[:100]),
        ("new_images", [*digits[5000:5010], *letters[5000:5010]]),
    ):
        (root / folder).mkdir()
        for k, image in enumerate(images):
            (root / folder / f"{k:02d}.png").write_bytes(encode(image))
    return root


def odin_ood(root: Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "odin_ood", *args], cwd=root, env=env(), capture_output=True, text=True, timeout=600
    )


def test_fit_score_serve_walkthrough_end_to_end(user_folder):
    root, commands = user_folder, readme_commands()
    fitted = odin_ood(root, ["fit", *commands["fit"]])
    assert fitted.returncode == 0, fitted.stderr
    assert {"detector.json", "fit.json", "fit_report.html", "fit_report.png"} <= {
        p.name for p in (root / "det").iterdir()
    }
    scored = odin_ood(root, ["score", *commands["score"]])
    assert scored.returncode == 0, scored.stderr
    rows = list(read_rows(root / "scores.csv"))
    assert [Path(r["source"]).name for r in rows] == [f"{k:02d}.png" for k in range(20)]

    # the rows are the library's: the exported model, the detector, PIL-decoded pixels normalised by hand
    model = models.load(root / "my_model.pt2", input_shape=(1, 28, 28))
    detector = Detector.load(root / "det", model)
    pixels = torch.stack([decoded((root / "new_images" / f"{k:02d}.png").read_bytes()) for k in range(20)])
    want = library_outputs(detector, (pixels - 0.1307) / 0.3081)
    assert [r["predicted_class"] for r in rows] == want["predicted_class"]
    assert [r["is_out_of_distribution"] for r in rows] == want["is_out_of_distribution"]
    assert max(abs(r["score"] - s) for r, s in zip(rows, want["score"], strict=True)) <= 1e-6
    assert sum(r["is_out_of_distribution"] for r in rows[10:]) > sum(r["is_out_of_distribution"] for r in rows[:10])

    proc, url = start_server(commands["serve"], extra_env={"ODIN_OOD_API_KEY": readme_api_key()}, cwd=root)
    try:
        files = [("images", (f"{k}.png", (root / "new_images" / f"{k:02d}.png").read_bytes())) for k in (0, 15)]
        r = httpx.post(url + "/v1/predict", files=files, headers={"X-API-Key": readme_api_key()}, timeout=30.0)
    finally:
        stop_server(proc)
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert [g["predicted_class"] for g in got] == [rows[0]["predicted_class"], rows[15]["predicted_class"]]
    assert [g["is_out_of_distribution"] for g in got] == [
        rows[0]["is_out_of_distribution"],
        rows[15]["is_out_of_distribution"],
    ]
    assert max(abs(g["score"] - rows[k]["score"]) for g, k in zip(got, (0, 15), strict=True)) <= 1e-6
