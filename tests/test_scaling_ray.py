"""Scoring on Ray Data (:mod:`odin_ood.commands.ray_data`; :class:`odin_ood.scaling.RayScorer`), on a
local cluster of 2 CPUs: ``odin-ood score --engine ray`` writes the very file one process writes (shards, Parquet and a
folder at once; --resume and --limit included), Ray's Parquet/CSV writers hold the same rows, a worker killed
while scoring is restarted and loses no row, and :class:`RayScorer` in ``Dataset.map_batches``
gives the single-process rows of encoded images and of arrays, bit for bit, although Ray cuts its
batches elsewhere (on a model whose rounding depends on the batch position). The tests that start
a cluster are marked ``ray`` (.ci/run runs them with ODIN_OOD_NO_SKIPS=1); the command's refusals
run in the default suite, with or without ray installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formats_support import killed_mid_write, real_images, write_folder, write_parquet, write_shards
from odin_ood.cli import main
from odin_ood.commands.row_files import read_rows
from serving_support import SRC

TESTS = Path(__file__).resolve().parent
RESULTS = ("predicted_class", "class_name", "confidence", "score", "is_out_of_distribution", "error")


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    items, det = real_images(shared_data, root)
    folder = write_folder(root / "imgs", items[:12])
    shards = write_shards(root / "shards", items[12:34], per_shard=8)
    parquet = write_parquet(root / "rest.parquet", items[34:], row_group_size=4)
    inputs = [folder, shards[0].parent, parquet]
    reference = root / "single.csv"
    assert score(det, inputs, reference) == 0
    return {"root": root, "items": items, "det": det, "inputs": inputs, "reference": reference}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray = pytest.importorskip("ray")
    marker = tmp_path_factory.mktemp("kill") / "killed"
    env = {
        "PYTHONPATH": f"{SRC}:{TESTS}",
        "ODIN_OOD_TEST_KILL_ONCE": str(marker),
        "ODIN_OOD_TEST_DRIVER_PID": str(os.getpid()),
        "OMP_NUM_THREADS": "1",
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield {"ray": ray, "marker": marker}
    ray.shutdown()


def score(det, inputs, output, *extra, model="position_support:make") -> int:
    return main(
        [
            "score",
            *map(str, inputs),
            "--output",
            str(output),
            "--detector",
            str(det),
            "--model",
            model,
            "--threads",
            "1",
            "--quiet",
            *extra,
        ]
    )


@pytest.mark.ray
def test_engine_ray_writes_the_single_process_file_and_resumes_it(setup, cluster, tmp_path, monkeypatch):
    out = tmp_path / "ray.csv"
    assert score(setup["det"], setup["inputs"], out, "--engine", "ray", "--ray-workers", "2", "--chunk", "16") == 0
    assert out.read_bytes() == setup["reference"].read_bytes()
    cut = tmp_path / "cut.csv"
    with killed_mid_write(monkeypatch, 1, 3), pytest.raises(KeyboardInterrupt):  # 19 rows: mid-batch
        score(setup["det"], setup["inputs"], cut, "--engine", "ray", "--chunk", "16")
    assert score(setup["det"], setup["inputs"], cut, "--engine", "ray", "--resume", "--chunk", "32") == 0
    assert cut.read_bytes() == out.read_bytes()
    single = tmp_path / "single.csv"  # one process and Ray record the same identity: either resumes the other
    with killed_mid_write(monkeypatch, 1, 3), pytest.raises(KeyboardInterrupt):
        score(setup["det"], setup["inputs"], single, "--chunk", "16")
    assert score(setup["det"], setup["inputs"], single, "--engine", "ray", "--resume") == 0
    assert single.read_bytes() == out.read_bytes()
    first = tmp_path / "first.parquet"
    assert score(setup["det"], setup["inputs"], first, "--engine", "ray", "--limit", "23") == 0
    assert list(read_rows(first)) == list(read_rows(out))[:23]


@pytest.mark.ray
@pytest.mark.parametrize("writer", ["parquet", "csv"])
def test_rays_own_writers_hold_the_same_rows(setup, cluster, tmp_path, writer):
    import pyarrow.dataset as pads

    out = tmp_path / "folder"
    assert score(setup["det"], setup["inputs"], out, "--engine", "ray", "--ray-writer", writer, "--chunk", "16") == 0
    table = pads.dataset(str(out), format=writer).to_table().sort_by("index")
    got = table.to_pylist()
    want = list(read_rows(setup["reference"]))
    for row in got:  # CSV has no null strings: empty cells come back as null
        row["error"] = row["error"] or ""
    assert got == want
    assert score(setup["det"], setup["inputs"], out, "--engine", "ray", "--ray-writer", writer) == 2  # exists


@pytest.mark.ray
def test_a_worker_killed_while_scoring_is_restarted_and_loses_no_row(setup, cluster, tmp_path):
    assert not cluster["marker"].exists()
    out = tmp_path / "killed.csv"
    assert (
        score(
            setup["det"],
            setup["inputs"],
            out,
            "--engine",
            "ray",
            "--ray-workers",
            "2",
            "--chunk",
            "16",
            model="killer_support:make",
        )
        == 0
    )
    assert cluster["marker"].exists() and int(cluster["marker"].read_text()) != os.getpid()  # a worker was killed
    assert out.read_bytes() == setup["reference"].read_bytes()


def batches_of(rows: list[dict]) -> dict[int, dict]:
    return {r["index"]: {k: r[k] for k in RESULTS} for r in rows}


@pytest.mark.ray
@pytest.mark.parametrize("kind", ["bytes", "arrays"])
def test_ray_scorer_in_map_batches_gives_the_single_process_rows(setup, cluster, kind):
    from ray.data import ActorPoolStrategy

    from odin_ood.scaling import RayScorer

    ray = cluster["ray"]
    blobs = [blob for _, blob, _ in setup["items"]]
    if kind == "arrays":  # decoded pixels, as ray.data.read_images gives them
        import io

        blobs = [np.asarray(Image.open(io.BytesIO(b))) for b in blobs]
    items = [{"index": i, "image": b, "note": f"n{i}"} for i, b in enumerate(blobs)]
    items.append({"index": len(items), "image": b"broken", "note": "bad"})
    ds = ray.data.from_items(items, override_num_blocks=7)  # blocks of 5-6 rows: Ray's batches cut the model's of 16
    scored = ds.map_batches(
        RayScorer,
        batch_size=5,
        compute=ActorPoolStrategy(size=2),
        num_cpus=1,
        fn_constructor_kwargs={"detector": str(setup["det"]), "model": "position_support:make"},
    )
    got = scored.take_all()
    assert {r["note"] for r in got} == {f"n{i}" for i in range(len(blobs))} | {"bad"} and "image" not in got[0]
    want = batches_of(list(read_rows(setup["reference"])))
    rows = batches_of(got)
    broken = rows.pop(len(blobs))
    assert broken["error"] == f"index {len(blobs)}: not an image in a format PIL can decode (UnidentifiedImageError)"
    assert rows == want


@pytest.mark.ray
def test_engine_ray_starts_a_local_cluster_when_none_runs(setup, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "alone.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "odin_ood",
        "score",
        *map(str, setup["inputs"]),
        "--output",
        str(out),
        "--detector",
        str(setup["det"]),
        "--model",
        "position_support:make",
        "--threads",
        "1",
        "--quiet",
        "--engine",
        "ray",
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        cmd,
        env=dict(env, PYTHONPATH=f"{SRC}:{TESTS}", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(read_rows(out)) == list(read_rows(setup["reference"]))


def test_ray_flags_without_the_ray_engine_and_a_missing_ray_are_one_line(tmp_path, capsys, monkeypatch):
    base = [
        "score",
        str(tmp_path),
        "--detector",
        str(tmp_path),
        "--model",
        "mnist-mlp",
        "--output",
        str(tmp_path / "o.csv"),
    ]
    assert main([*base, "--ray-workers", "2", "--ray-writer", "csv"]) == 2
    assert "--ray-workers, --ray-writer need --engine ray" in capsys.readouterr().err
    assert main([*base, "--engine", "ray", "--distributed"]) == 2
    assert "two engines: pass one" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if odin-ood[ray] were not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    assert main([*base, "--engine", "ray"]) == 2
    assert "--engine ray needs ray, which is not installed: pip install 'odin-ood[ray]'" in capsys.readouterr().err
