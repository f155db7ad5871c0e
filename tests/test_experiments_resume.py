"""Resumable passes: chunked cache entries, a killed pass continuing where it stopped, partial
rows labelled as such, and the run folder never holding stale results as if complete."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from odin_ood.data import ImageDataset
from odin_ood.experiments.cache import ScoreCache
from odin_ood.experiments.every_image import every_image_pass, every_image_rows, msp_from_logits
from odin_ood.experiments.progress import Progress
from odin_ood.experiments.results import begin
from odin_ood.experiments.scorer import CELL_CHUNK, Scorer
from odin_ood.experiments.suites import DataSpec
from odin_ood.metrics import evaluate
from odin_ood.scores.odin import odin_outputs

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class Killed(Exception):
    pass


def test_chunked_entry_resumes_at_the_first_missing_chunk(tmp_path):
    cache = ScoreCache(tmp_path)
    key = {"method": "toy", "n": 10}
    calls = []

    def compute(start, stop):
        calls.append((start, stop))
        if len(calls) == 3:
            raise Killed  # the run dies while computing the third chunk
        return {"v": np.arange(start, stop, dtype=np.float32)}

    with pytest.raises(Killed):
        cache.get_chunked(key, 10, 4, compute)
    assert cache.finished(key, 10, 4)["v"].tolist() == list(range(8))  # two finished chunks survive
    calls.clear()
    whole = cache.get_chunked(key, 10, 4, lambda a, b: calls.append((a, b)) or {"v": np.arange(a, b, dtype=np.float32)})
    assert calls == [(8, 10)]  # only the missing chunk is computed
    assert whole["v"].tolist() == list(range(10))
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["toy"]  # chunk entries joined and removed
    assert cache.get_chunked(key, 10, 4, None)["v"].tolist() == list(range(10))
    part, cached = cache.chunk(key, 4, 8, compute)  # a chunk of a joined entry is a slice of it
    assert cached and part["v"].tolist() == [4, 5, 6, 7] and calls == [(8, 10)]


def test_look_only_returns_none_until_complete(tmp_path):
    cache = ScoreCache(tmp_path)
    key = {"method": "toy"}
    assert cache.get_chunked(key, 6, 4, None) is None and cache.finished(key, 6, 4) is None
    cache.chunk(key, 4, 6, lambda a, b: {"v": np.ones(b - a)})  # a second worker finished the last chunk
    assert cache.get_chunked(key, 6, 4, None) is None
    got = cache.finished(key, 6, 4)
    assert got["v"].tolist() == [1, 1] and got["rows"].tolist() == [4, 5]


class TinyConv(torch.nn.Module):
    input_mean, input_std, num_classes = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 3

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def _set(n, seed, name):
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(
        torch.randint(0, 256, (n, 3, 6, 6), generator=g, dtype=torch.uint8),
        name=name,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        manifest={"name": name},
    )


def test_every_image_rows_equal_direct_scores_and_partial_runs_are_labelled(tmp_path):
    model = TinyConv().eval()
    scorer = Scorer(model, (1.0,), (0.0,), ScoreCache(tmp_path), batch_size=64, progress=False)
    id_ds, ood_a, ood_b = _set(40, 0, "id"), _set(CELL_CHUNK + 30, 1, "a"), _set(CELL_CHUNK + 30, 2, "b")
    specs = [
        (DataSpec("a", "A", "x", {}, "tinyimagenet-crop"), ood_a),
        (DataSpec("b", "B", "x", {}, "gaussian"), ood_b),
    ]
    row = "Dense-BC CIFAR-10"  # T = 1000, eps = 0.0014 for both sets
    calls = {"n": 0}
    real = scorer._cell_compute

    def dying(ds, T, eps, *args, **kwargs):
        fn = real(ds, T, eps, *args, **kwargs)

        def compute(a, b):
            calls["n"] += 1
            if calls["n"] == 4:  # ID, a[0], b[0] finished; dies on a[1]
                raise Killed
            return fn(a, b)

        return compute

    scorer._cell_compute = dying
    with pytest.raises(Killed):
        every_image_pass(scorer, id_ds, specs, row, progress=False)
    partial = every_image_rows(scorer, id_ds, specs, row)
    assert [(r["ood"], r["n_out"], r["complete"]) for r in partial] == [
        ("a", CELL_CHUNK, False),
        ("b", CELL_CHUNK, False),
    ]
    scorer._cell_compute = real
    every_image_pass(scorer, id_ds, specs, row, progress=False)
    rows = every_image_rows(scorer, id_ds, specs, row)
    assert all(r["complete"] and r["n_out"] == CELL_CHUNK + 30 for r in rows)

    def direct(ds):
        x = (ds.images.float() / 255 - 0.5) / 0.25
        z, s = odin_outputs(model, x, 1000.0, 0.0014, input_std=model.input_std)
        return z.numpy(), s.numpy()

    z_in, s_in = direct(id_ds)
    z_out, s_out = direct(ood_a)
    assert rows[0]["odin"] == pytest.approx(evaluate(s_in, s_out), abs=1e-6)
    assert rows[0]["msp"] == pytest.approx(evaluate(msp_from_logits(z_in), msp_from_logits(z_out)), abs=1e-6)
    np.testing.assert_allclose(msp_from_logits(z_in), torch.softmax(torch.from_numpy(z_in), 1).max(1).values.numpy())


def test_begin_moves_stale_results_aside(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "report.html").write_text("<html>")

    class Cfg:
        suite, quick = "cifar10-resnet20", False

    begin(tmp_path, Cfg())
    assert not (tmp_path / "results.json").exists() and (tmp_path / "results.json.previous").exists()
    assert "incomplete" in json.loads((tmp_path / "RUNNING.json").read_text())["note"]


def test_progress_rate_ignores_cached_images(capsys):
    import io

    buf = io.StringIO()
    p = Progress("stage", 100, every=0.0, stream=buf)
    p.advance("x", 50, cached=True)
    assert p.rate() == 0.0 and "ETA ?" in buf.getvalue()
    p.advance("x", 10, cached=False)
    assert p.rate() > 0 and "60/100 img (50 cached)" in buf.getvalue()


def test_a_time_limit_stops_before_the_next_chunk(tmp_path):
    from odin_ood.experiments.progress import OutOfTime

    scorer = Scorer(TinyConv().eval(), (1.0,), (0.0,), ScoreCache(tmp_path), batch_size=64, progress=False)
    ds = _set(CELL_CHUNK + 5, 3, "x")
    scorer.cell_chunk(ds, 1000.0, 0.0014, 0)
    scorer.deadline = 0.0  # long past
    with pytest.raises(OutOfTime):
        scorer.cell_outputs(ds, 1000.0, 0.0014)
    assert scorer.cell_finished(ds, 1000.0, 0.0014)["scores"].size == CELL_CHUNK  # the finished chunk is kept


def test_cpu_path_suite_tunes_on_the_splits_and_stops_cleanly(shared_data, tmp_path):
    """The mnist suite without the every-image grid: halving and grid searches, the report naming
    the search and listing the grid-only figures as skipped; a zero time limit writes an
    incomplete result from the cache alone."""
    from odin_ood.experiments import RunConfig, run_suite
    from odin_ood.report import write_report

    def config(search, **kw):
        return RunConfig(
            suite="mnist-mlp",
            out=str(tmp_path / search),
            data_root=str(shared_data),
            limit=160,
            cache_dir=str(tmp_path / "cache"),
            resamples=10,
            repeats=2,
            analysis_n=10,
            distance_m=10,
            progress=False,
            temperatures=(1.0, 10.0, 1000.0),
            epsilons=(0.0, 0.002, 0.004),
            eval_grid=False,
            search=search,
            **kw,
        )

    grid = run_suite(config("grid"))
    halving = run_suite(config("halving"))
    assert grid["complete"] and halving["complete"] and halving["search"] == "halving"
    assert {k: v["temperature"] for k, v in grid["tuning"].items()} == {
        k: v["temperature"] for k, v in halving["tuning"].items()
    }
    assert all(v["search"] == "grid" and v["cost_fraction_of_grid"] == 1.0 for v in grid["tuning"].values())
    html = write_report(halving, tmp_path / "halving").read_text()
    assert "<b>halving</b>" in html and "Figures 3, 4, 7-9" in html and "--eval-grid" in html
    rows = {(r["ood"], r["method"]): r for r in grid["main_table"]["rows"]}
    assert rows[("omniglot", "odin-tuned")]["search"] == "grid" and rows[("omniglot", "msp")]["n_in"] == 80
    # beyond the paper on the CPU path: energy + perturbation rows and the tuning-source table
    assert rows[("omniglot", "energy-odin")]["n_out"] == rows[("omniglot", "msp")]["n_out"]
    sources = {r["source"]: r for r in grid["tuning_sources"]["sets"]["omniglot"]["rows"]}
    assert {"noise", "id-only-t1000", "paper", "same-set", "oracle"} <= set(sources)
    tuned = grid["tuning"]["omniglot"]
    assert (sources["same-set"]["temperature"], sources["same-set"]["epsilon"]) == (
        tuned["temperature"],
        tuned["epsilon"],
    )
    assert (
        sources["same-set"]["metrics"]["fpr_at_95_tpr"] == rows[("omniglot", "odin-tuned")]["metrics"]["fpr_at_95_tpr"]
    )
    assert (
        grid["tuning_sources"]["evaluated"]["limit"] == 2000
        and "tuning source" in write_report(grid, tmp_path / "grid").read_text()
    )
    stopped = run_suite(
        RunConfig(**{**config("grid").__dict__, "out": str(tmp_path / "stopped"), "limit": 150, "time_limit": 0.0})
    )  # other images: nothing cached
    assert not stopped["complete"] and "time limit" in stopped["stopped"]
    assert (tmp_path / "stopped" / "RUNNING.json").exists()
    assert "INCOMPLETE RUN" in write_report(stopped, tmp_path / "stopped").read_text()


def test_the_full_grid_is_the_cpu_default_only_for_the_cheap_mnist_suites():
    from odin_ood.experiments import RunConfig

    def default(suite, **kw):
        return RunConfig(suite=suite, out="unused", device="cpu", **kw).resolved().eval_grid

    assert default("mnist-lenet") and default("mnist-mlp")
    assert not default("cifar10-densenet") and not default("cifar10-resnet20")
    assert default("cifar10-densenet", quick=True) and not default("mnist-lenet", eval_grid=False)


def test_progress_counts_a_pass_found_whole_in_the_cache(tmp_path):
    """A finished pass read back whole advances the stage's progress as cached images (it used
    to advance nothing, so the stage never reached its total and the ETA counted it as to do)."""
    import io

    scorer = Scorer(TinyConv().eval(), (1.0,), (0.0,), ScoreCache(tmp_path), batch_size=64, progress=False)
    ds = _set(CELL_CHUNK + 5, 3, "x")
    scorer.cell_outputs(ds, 1000.0, 0.0014)  # computed and joined into one entry
    buf = io.StringIO()
    bar = Progress("stage", 2 * len(ds), every=0.0, stream=buf)
    scorer.cell_outputs(ds, 1000.0, 0.0014, progress=bar)
    assert bar.done == len(ds) and bar.cached == len(ds) and bar.computed == 0
