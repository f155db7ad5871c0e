"""Tuning sources (experiments/tuning_sources.py) and the score-family rows (successor_rows.py), on
synthetic grid scores where what each source may see is controlled exactly."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from odin_ood.data import ImageDataset
from odin_ood.experiments.cache import ScoreCache
from odin_ood.experiments.protocol import Experiment, Scored, Split, fpr_grid, split_indices
from odin_ood.experiments.scorer import Scorer
from odin_ood.experiments.tuning_sources import (
    Evaluation,
    choices,
    compare,
    evaluated_rows,
    id_only_choice,
    overlaps,
    summarise,
    verdict,
)

T, E = (1.0, 10.0, 1000.0), (0.0, 0.001, 0.002)


class Tiny(nn.Module):
    input_mean, input_std, num_classes = (0.5,), (0.25,), 2

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _scored(key, n, seed, loader, shift, n_tune=None):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 1, 2, 2), dtype=np.uint8)
    grid = rng.normal(shift, 1.0, (len(T), len(E), n)).astype(np.float32)
    split = Split(np.arange(n), np.arange(0), -1) if n_tune is None else split_indices(n, n_tune, seed)
    ds = ImageDataset(images, name=key, mean=(0.5,), std=(0.25,))
    return Scored(
        key=key,
        label=key,
        data=ds,
        grid=grid,
        logits=np.zeros((n, 2), np.float32),
        split=split,
        paper_key=loader,
        manifest={"loader": loader},
    )


@pytest.fixture()
def exp(tmp_path):
    scorer = Scorer(Tiny(), T, E, ScoreCache(tmp_path), progress=False)
    ids = _scored("id", 300, 1, "mnist", 1.0, 100)
    oods = [
        _scored("a", 200, 2, "omniglot", 0.0, 80),
        _scored("b", 200, 3, "notmnist", 0.2, 80),
        _scored("gaussian", 200, 4, "gaussian", -0.5, 80),
    ]
    noise = _scored("tuning-noise", 120, 5, "gaussian", -0.3)
    return Experiment(scorer=scorer, id_set=ids, oods=oods, paper_row="MNIST", paper_matches=True), noise


def test_no_source_but_the_oracle_reads_an_evaluation_split(exp):
    """Overwrite every evaluation split (ID and the evaluated set) with other values: every
    source's choice must stay, and the oracle's must follow the new evaluation data."""
    e, noise = exp
    for target in e.oods:
        before = choices(e, noise, target)
        saved = (e.id_set.grid.copy(), target.grid.copy())
        rng = np.random.default_rng(9)
        ev_in, ev_out = e.id_set.split.eval, target.split.eval
        e.id_set.grid[..., ev_in] = rng.normal(0, 1, e.id_set.grid[..., ev_in].shape)
        target.grid[..., ev_out] = rng.normal(0, 1, target.grid[..., ev_out].shape)
        # make one cell perfect on the evaluation splits: the oracle must pick it
        e.id_set.grid[2, 1, ev_in] += 100.0
        e.tunings.clear()
        after = choices(e, noise, target)
        for key, (choice, _) in before.items():
            if key != "oracle":
                assert after[key][0] == choice, key
        assert after["oracle"][0] == (1000.0, 0.001)
        e.id_set.grid[:], target.grid[:] = saved
        e.tunings.clear()


def test_the_evaluated_set_is_never_a_source_except_for_same_set_and_oracle(exp):
    e, noise = exp
    for target in e.oods:
        found = choices(e, noise, target)
        assert f"loo:{target.key}" not in found
        assert {k[4:] for k in found if k.startswith("loo:")} == {
            o.key for o in e.oods if o.key != target.key and o.manifest["loader"] != "gaussian"
        }
        assert "ORACLE" in found["oracle"][1]


def test_noise_source_tunes_on_the_pooled_noise_draws_and_the_id_tuning_split(exp):
    e, noise = exp
    found = choices(e, noise, e.oods[0])["noise"][0]
    f = fpr_grid(e.id_set.tune(), noise.grid)
    i, j = np.unravel_index(int(np.argmin(f)), f.shape)
    assert found == (T[i], E[j])


def test_id_only_criterion_maximises_the_mean_id_tuning_score_at_fixed_t(exp):
    e, _ = exp
    e.id_set.grid[2, 2, e.id_set.split.tune] += 5.0  # T = 1000, eps = 0.002 on the tuning split only
    assert id_only_choice(e, 1000.0) == (1000.0, 0.002)
    e.id_set.grid[0, 1, e.id_set.split.tune] += 3.0  # T = 1: eps = 0.001 on the tuning split
    e.id_set.grid[0, 2, e.id_set.split.eval] += 50.0  # the evaluation split is ignored
    assert id_only_choice(e, 1.0) == (1.0, 0.001)
    assert id_only_choice(e, 3.0) is None


def test_content_overlap_is_counted(exp):
    e, noise = exp
    target = e.oods[0]
    assert all(v == 0 for v in overlaps(e, noise, target, ["noise", "same-set", "loo:b", "id-only-t1000"]).values())
    noise.data.images[3] = target.data.images[target.split.eval[0]]  # a noise draw equal to an evaluated image
    assert overlaps(e, noise, target, ["noise", "same-set"]) == {"noise": 1, "same-set": 0}


def test_compare_summary_and_verdict_use_the_real_ood_sets(exp):
    e, noise = exp
    out = compare(e, noise, resamples=5)
    assert set(out["sets"]) == {"a", "b", "gaussian"} and not out["sets"]["gaussian"]["natural"]
    for entry in out["sets"].values():
        rows = {r["source"]: r for r in entry["rows"]}
        oracle = rows["oracle"]["metrics"]["fpr_at_95_tpr"]
        assert all(oracle <= r["metrics"]["fpr_at_95_tpr"] for r in rows.values())  # the oracle is an upper bound
        assert rows["paper"]["temperature"] == 1000.0 and rows["paper"]["epsilon"] == 0.0  # MNIST: T=1000, eps=0
    a = {r["source"]: r["metrics"]["fpr_at_95_tpr"] for r in out["sets"]["a"]["rows"]}
    b = {r["source"]: r["metrics"]["fpr_at_95_tpr"] for r in out["sets"]["b"]["rows"]}
    assert out["summary"]["noise"]["sets"] == 2
    assert out["summary"]["noise"]["mean_fpr_at_95_tpr"] == pytest.approx((a["noise"] + b["noise"]) / 2)
    assert out["summary"]["loo (mean over sources)"]["mean_fpr_at_95_tpr"] == pytest.approx(
        (a["loo:b"] + b["loo:a"]) / 2
    )
    best = min(("noise", "id-only-t1000", "id-only-t1", "paper"), key=lambda k: out["summary"][k]["mean_fpr_at_95_tpr"])
    assert out["verdict"].startswith(f"best OOD-free tuning here: {best} ")


def test_verdict_without_real_ood_sets():
    assert verdict(summarise({})).startswith("no real")


def _model_scored(scorer, key, images, loader, n_tune, full):
    ds = ImageDataset(images, name=key, mean=(0.5,), std=(0.25,))
    arrays = scorer.grid(ds) if full else {"grid": None, "logits": scorer.grid(ds)["logits"]}
    split = split_indices(len(ds), n_tune, len(images))
    return Scored(
        key=key,
        label=key,
        data=ds,
        grid=arrays["grid"],
        logits=arrays["logits"],
        split=split,
        paper_key=loader,
        manifest={"loader": loader},
    )


def _model_experiment(tmp_path, full, limit=None):
    import torch

    torch.manual_seed(0)
    scorer = Scorer(Tiny(), T, E, ScoreCache(tmp_path / ("full" if full else "cpu")), batch_size=16, progress=False)
    rng = np.random.default_rng(0)
    sets = {
        "id": (rng.integers(100, 256, (90, 1, 2, 2)), "mnist", 40),
        "a": (rng.integers(0, 256, (70, 1, 2, 2)), "omniglot", 30),
        "b": (rng.integers(0, 160, (70, 1, 2, 2)), "notmnist", 30),
    }
    scored = {k: _model_scored(scorer, k, v[0].astype(np.uint8), v[1], v[2], full) for k, v in sets.items()}
    noise = _model_scored(
        scorer, "tuning-noise", rng.integers(0, 256, (50, 1, 2, 2)).astype(np.uint8), "gaussian", 1, full
    )
    noise = Scored(**{**noise.__dict__, "split": Split(np.arange(50), np.arange(0), -1)})
    e = Experiment(
        scorer=scorer, id_set=scored["id"], oods=[scored["a"], scored["b"]], paper_row="MNIST", paper_matches=True
    )
    return e, noise


def test_cpu_path_matches_the_full_grid_path(tmp_path):
    """Without the full grid (the CPU path: choices by the model on the tuning images, the
    evaluated cells scored on demand) every source chooses the same cell and measures the same
    metrics as when every image was scored at every cell."""
    full = compare(*_model_experiment(tmp_path, True), resamples=5)
    cpu = compare(*_model_experiment(tmp_path, False), resamples=5)
    for key in full["sets"]:
        a = {r["source"]: r for r in full["sets"][key]["rows"]}
        b = {r["source"]: r for r in cpu["sets"][key]["rows"]}
        assert a.keys() == b.keys()
        for source in a:
            assert (a[source]["temperature"], a[source]["epsilon"]) == (b[source]["temperature"], b[source]["epsilon"])
            for m in ("fpr_at_95_tpr", "auroc"):
                assert b[source]["metrics"][m] == pytest.approx(a[source]["metrics"][m], abs=1e-9), (key, source, m)


def test_subsampled_evaluation_and_its_oracle(tmp_path):
    """With ``eval_limit`` every row is measured on the same seeded subsample, and the oracle is
    the best cell on exactly those images (checked against every cell scored on them)."""
    e, noise = _model_experiment(tmp_path, False)
    out = compare(e, noise, resamples=5, eval_limit=25)
    ev = Evaluation(e, 25)
    assert ev.id_rows.size == 25 and set(ev.id_rows) <= set(e.id_set.split.eval)
    assert np.array_equal(ev.id_rows, evaluated_rows(e.id_set, 25, e.seed))
    for target in e.oods:
        rows = ev.rows(target)
        assert rows.size == 25 and set(rows) <= set(target.split.eval)
        g_in = e.scorer.grid(e.id_set.data)["grid"][..., ev.id_rows]
        g_out = e.scorer.grid(target.data)["grid"][..., rows]
        f = fpr_grid(g_in, g_out)
        got = {r["source"]: r for r in out["sets"][target.key]["rows"]}
        assert all(r["n_in"] == 25 and r["n_out"] == 25 for r in got.values())
        assert got["oracle"]["metrics"]["fpr_at_95_tpr"] == pytest.approx(f.min())
        i, j = np.unravel_index(int(np.argmin(f)), f.shape)
        assert (got["oracle"]["temperature"], got["oracle"]["epsilon"]) == (T[i], E[j])
        for r in got.values():  # every source is measured on the same images
            ti, tj = T.index(r["temperature"]), E.index(r["epsilon"])
            assert r["metrics"]["fpr_at_95_tpr"] == pytest.approx(f[ti, tj], abs=1e-9)
    assert out["evaluated"]["limit"] == 25


def test_energy_odin_rows_match_between_the_cpu_and_full_grid_paths(tmp_path):
    """Energy + perturbation: epsilon tuned on the tuning splits and the evaluation scores agree
    whether the epsilon grid was scored on every image or only on the tuning splits followed by
    one pass at the chosen epsilon; and they equal the pure function on the evaluated images."""
    import torch

    from odin_ood.experiments import successor_rows
    from odin_ood.scores.energy import energy_odin_scores

    full, _ = _model_experiment(tmp_path, True)
    cpu, _ = _model_experiment(tmp_path, False)
    successor_rows.prepare(cpu, progress=False)
    for a, b in zip(full.oods, cpu.oods, strict=True):
        fa, fb = (successor_rows.method_scores(e, o, "energy-odin") for e, o in ((full, a), (cpu, b)))
        assert fa[3] == fb[3]
        np.testing.assert_allclose(fb[0], fa[0], atol=1e-5)
        np.testing.assert_allclose(fb[1], fa[1], atol=1e-5)
        x = cpu.scorer.inputs(b.data.images[torch.from_numpy(b.split.eval)])
        ref = energy_odin_scores(cpu.scorer.model.double(), x.double(), 1.0, fb[3], input_std=(0.25,), normalise=False)
        cpu.scorer.model.float()
        np.testing.assert_allclose(fb[1], ref.numpy(), atol=1e-4)


def test_the_oracle_can_be_left_out_and_the_rest_is_unchanged(tmp_path):
    e, noise = _model_experiment(tmp_path, False)
    full = compare(e, noise, resamples=5, eval_limit=25)
    lean = compare(e, noise, resamples=5, eval_limit=25, oracle=False)
    assert "oracle" not in lean["summary"] and lean["oracle"].startswith("left out") and full["oracle"] == "computed"
    for key in full["sets"]:
        a = {r["source"]: r["metrics"] for r in full["sets"][key]["rows"] if r["source"] != "oracle"}
        assert a == {r["source"]: r["metrics"] for r in lean["sets"][key]["rows"]}
