"""mkdocs hook: the pictures a reader looks at, made by the real commands of this checkout.

At each build, ``odin-ood demo --seed 0`` and the getting-started tour's ``odin-ood fit`` (the
shipped ``mnist-lenet``; 200 digits and 200 notMNIST letters of the sample embedded in the
package, as PNG files) run into ``.cache/docs-pictures/`` (git-ignored), and their PNG and HTML
files join the site under ``generated/``. So a picture always comes from the code it documents,
never from an older commit. The folder is reused only when it records the same key: a hash of
every file under ``src/odin_ood`` and the torch version (about 10 s to make, on a 2-core CPU).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "docs-pictures"
KEEP = {"demo": ("scores.png", "summary.html", "demo.json"), "fit": ("fit_report.png", "fit_report.html", "fit.json")}

WRITE_FOLDERS = """
from pathlib import Path
from PIL import Image
from odin_ood.assets import demo_sample
s = demo_sample()
for name, folder in (("mnist", "digits"), ("notmnist", "letters")):
    Path(folder).mkdir(exist_ok=True)
    for i, img in enumerate(s[name].images[:200, 0].numpy()):
        Image.fromarray(img).save(f"{folder}/{i:03d}.png")
"""


def source_key() -> str:
    """sha256 over every file of the package (path and bytes), this Python and torch's version."""
    import torch

    h = hashlib.sha256(f"{sys.version} torch {torch.__version__}\n".encode())
    for path in sorted((ROOT / "src" / "odin_ood").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def run(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"docs pictures: {' '.join(args[:4])} failed:\n{done.stderr[-2000:]}")


def make(out: Path) -> None:
    work = out / "work"
    work.mkdir(parents=True)
    run(["-m", "odin_ood", "demo", "--seed", "0", "--out", str(out / "generated" / "demo")], work)
    run(["-c", WRITE_FOLDERS], work)
    run(["-m", "odin_ood", "fit", "--model", "mnist-lenet", "--id", "digits/", "--ood", "letters/",
         "--out", str(out / "generated" / "fit")], work)
    shutil.rmtree(work)


def pictures() -> Path:
    key = source_key()
    if (CACHE / "key.txt").is_file() and (CACHE / "key.txt").read_text() == key:
        return CACHE
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix="docs-pictures.", dir=CACHE.parent))
    make(fresh)
    (fresh / "key.txt").write_text(key)
    if CACHE.exists():
        shutil.rmtree(CACHE)
    fresh.rename(CACHE)
    return CACHE


def on_files(files, config):
    folder = pictures()
    for part, names in KEEP.items():
        for name in names:
            files.append(File(f"generated/{part}/{name}", src_dir=str(folder), dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    return files
