"""The benchmarks start and write consistent JSON at tiny sizes (times are never asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run_all.py"),
            "--tiny",
            "--device",
            "cpu",
            "--threads",
            "2",
            "--out",
            str(out),
            "--results",
            str(out / "RESULTS.md"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def load(out: Path, label: str, name: str) -> dict:
    return json.loads((out / label / f"{name}.json").read_text())


def test_run_all_records_every_benchmark(tiny_run):
    status = json.loads((tiny_run / "run_all.json").read_text())["status"]
    assert set(status) == {"scoring", "tuning", "metrics", "reproduce"} and all(s["ok"] for s in status.values())
    md = (tiny_run / "RESULTS.md").read_text()
    for title in ("bench_scoring", "bench_tuning", "bench_metrics", "bench_reproduce"):
        assert f"### {title}" in md
    assert "torch " in md and "batch_size" in md


def test_scoring_json_has_both_methods_and_a_consistent_ratio(tiny_run):
    d = load(tiny_run, "scoring", "bench_scoring")
    assert {"device", "torch", "dtype", "batch_size"} <= set(d["context"])
    assert {(r["model"], r["dtype"]) for r in d["rows"]} == {
        (m, t) for m in ("mnist-mlp", "resnet20") for t in ("fp32", "bf16")
    }
    for r in d["rows"]:
        assert r["odin_over_msp"] == pytest.approx(r["odin_images_per_s"] / r["msp_images_per_s"])
        assert "odin_weight_grads_images_per_s" in r
    assert {r["model"]: r["channels_last"] for r in d["rows"]} == {"mnist-mlp": False, "resnet20": True}


def test_tuning_json_shows_the_same_optimum_and_fewer_passes(tiny_run):
    d = load(tiny_run, "tuning", "bench_tuning")
    assert d["grid"] == [2, 3] and d["passes_shared"] < d["passes_naive"]
    for r in d["rows"]:
        assert r["same_optimum"] and r["same_metrics"] and r["max_abs_diff"] <= 1e-5
        assert r["optimum"] == d["naive_optimum"]
        assert r["shared_over_naive"] == pytest.approx(r["shared_s"] / r["naive_s"])
    assert next(r for r in d["rows"] if r["cells_per_forward"] == 1)["identical_scores"]


def test_metrics_json_covers_each_size(tiny_run):
    d = load(tiny_run, "metrics", "bench_metrics")
    assert [r["n"] for r in d["rows"]] == [1000, 10000]
    assert all("seconds" in r and "ns_per_n_log2_n" in r for r in d["rows"])


def test_reproduce_json_has_four_ood_sets_per_precision(tiny_run):
    d = load(tiny_run, "reproduce", "bench_reproduce")
    assert [r["dtype"] for r in d["runs"]] == ["fp32", "bf16"] and d["data"].startswith("synthetic")
    for run in d["runs"]:
        assert list(run["sets"]) == ["tinyimagenet-crop", "tinyimagenet-resize", "gaussian", "uniform"]
        for s in run["sets"].values():
            assert 0 <= s["odin"]["fpr_at_95_tpr"] <= 1 and s["temperature"] in (1.0, 1000.0)
    bf16 = d["runs"][1]["sets"]["gaussian"]
    assert bf16["fpr_points_vs_fp32"] == pytest.approx(
        100 * (bf16["odin"]["fpr_at_95_tpr"] - d["runs"][0]["sets"]["gaussian"]["odin"]["fpr_at_95_tpr"])
    )


def test_scoring_at_epsilon_zero_records_the_one_forward_floor(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_scoring

    d = bench_scoring.main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--models",
            "mnist-mlp",
            "--epsilon",
            "0",
            "--baseline",
            "--out",
            str(tmp_path),
            "--results",
            str(tmp_path / "R.md"),
        ]
    )
    (row,) = d["rows"]
    assert d["epsilon"] == 0.0 and row["epsilon"] == 0.0
    assert row["floor_fraction"] == pytest.approx(row["odin_over_msp"])  # the floor is 1.0 at epsilon = 0
    assert "one forward, as MSP" in (tmp_path / "R.md").read_text()


def test_tuning_floor_by_pass_count_on_the_papers_grid(tiny_run):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_tuning
    from odin_ood import PAPER_EPSILONS, PAPER_TEMPERATURES

    # 10 x 21 grid, 200 cells with eps > 0 and 10 at eps = 0: shared = 1 + 10 b + 200 forward-equivalents,
    # cell by cell = 200 (2 + b) + 10 (a forward, a backward, a forward; one forward at eps = 0)
    assert bench_tuning.passes(PAPER_TEMPERATURES, PAPER_EPSILONS) == {"passes_naive": 610, "passes_shared": 211}
    assert bench_tuning.floor_ratio(PAPER_TEMPERATURES, PAPER_EPSILONS, 1.0) == pytest.approx(211 / 610)
    assert bench_tuning.floor_ratio(PAPER_TEMPERATURES, PAPER_EPSILONS, 2.0) == pytest.approx(221 / 810)  # ~0.27
    d = load(tiny_run, "tuning", "bench_tuning")
    # b is a ratio of measured times (it can even come out negative on a busy machine): only the
    # arithmetic that turns it into the recorded floor is a fact to assert.
    assert d["floor_at_measured_b"] == pytest.approx(
        bench_tuning.floor_ratio([1.0, 1000.0], [0.0, 0.001, 0.002], d["backward_over_forward"])
    )


def test_peers_benchmark_without_peers_times_both_variants_at_equal_scores(tmp_path, shared_data):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    import bench_peers

    threads = torch.get_num_threads()
    try:  # the benchmark sets one thread
        d = bench_peers.main(
            [
                "--tiny",
                "--peers",
                "--data-root",
                str(shared_data),
                "--out",
                str(tmp_path),
                "--results",
                str(tmp_path / "R.md"),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert {(r["score"], r["method"]) for r in d["rows"]} == {
        (s, v) for s in ("odin", "msp") for v in ("eager", "folded")
    }
    assert all(r["max_abs_diff"] <= 1e-5 and r["images_per_s"] > 0 and r["over_pytorch_ood"] is None for r in d["rows"])
    assert (
        d["context"]["threads"] == 1
        and "load_average" in d["context"]
        and "### bench_peers" in (tmp_path / "R.md").read_text()
    )
    with pytest.raises(SystemExit, match="runtimes"):
        bench_peers.main(["--tiny", "--runtime", "no-such-runtime", "--out", str(tmp_path)])
