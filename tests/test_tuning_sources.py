"""Tuning sources (experiments/tuning_sources.py) and the score-family rows (score_family.py), on
synthetic grid scores where what each source may see is controlled exactly."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from odin_ood.data import ImageDataset
from odin_ood.experiments.cache import ScoreCache
from odin_ood.experiments.protocol import Experiment, Scored, Scorer, Split, fpr_grid, split_indices
from odin_ood.experiments.tuning_sources import choices, compare, id_only_choice, overlaps, summarise, verdict

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
    split = (Split(np.arange(n), np.arange(0), -1) if n_tune is None else split_indices(n, n_tune, seed))
    ds = ImageDataset(images, name=key, mean=(0.5,), std=(0.25,))
    return Scored(key=key, label=key, data=ds, grid=grid, logits=np.zeros((n, 2), np.float32), split=split,
                  paper_key=loader, manifest={"loader": loader})


@pytest.fixture()
def exp(tmp_path):
    scorer = Scorer(Tiny(), T, E, ScoreCache(tmp_path), progress=False)
    ids = _scored("id", 300, 1, "mnist", 1.0, 100)
    oods = [_scored("a", 200, 2, "omniglot", 0.0, 80), _scored("b", 200, 3, "notmnist", 0.2, 80),
            _scored("gaussian", 200, 4, "gaussian", -0.5, 80)]
    noise = [_scored("tuning-gaussian", 60, 5, "gaussian", -0.3), _scored("tuning-uniform", 60, 6, "uniform", -0.3)]
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
        assert {k[4:] for k in found if k.startswith("loo:")} == {o.key for o in e.oods if o.key != target.key
                                                                  and o.manifest["loader"] != "gaussian"}
        assert "ORACLE" in found["oracle"][1]


def test_noise_source_tunes_on_the_pooled_noise_draws_and_the_id_tuning_split(exp):
    e, noise = exp
    found = choices(e, noise, e.oods[0])["noise"][0]
    f = fpr_grid(e.id_set.tune(), np.concatenate([n.grid for n in noise], axis=-1))
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
    noise[0].data.images[3] = target.data.images[target.split.eval[0]]  # a noise draw equal to an evaluated image
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
    assert out["summary"]["loo (mean over sources)"]["mean_fpr_at_95_tpr"] == pytest.approx((a["loo:b"] + b["loo:a"]) / 2)
    best = min(("noise", "id-only-t1000", "id-only-t1", "paper"), key=lambda k: out["summary"][k]["mean_fpr_at_95_tpr"])
    assert out["verdict"].startswith(f"best OOD-free tuning here: {best} ")


def test_verdict_without_real_ood_sets():
    assert verdict(summarise({})) .startswith("no real")
