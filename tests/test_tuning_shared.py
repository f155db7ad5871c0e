"""The shared search (odin_ood.tuning.shared): its pass count, hand-worked and counted on a real
model; its survey against per-cell ODIN; its choice against the full grid on real MNIST /
notMNIST with the shipped LeNet; progress per pass of a sub-batch; --search grid unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odin_ood import Detector, data, models, odin_scores, tune
from odin_ood._utils.progress import PassProgress
from odin_ood.scores.odin import odin_grid_scores, odin_shared_direction_scores
from odin_ood.tuning import PAPER_EPSILONS, PAPER_TEMPERATURES
from odin_ood.tuning.searches import grid_passes
from odin_ood.tuning.shared import planned_passes, shared_search, survey_epsilons, worst_case_passes

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class CountingBar:
    """A stand-in for tqdm's bar: records every update (no clock involved)."""

    def __init__(self, total):
        self.total, self.n, self.updates = total, 0.0, []

    def update(self, k):
        self.updates.append(k)
        self.n += k

    def refresh(self):
        pass

    def close(self):
        pass


class TableBackend:
    """Scores read from tables: OOD images score above all ID images (FPR 1) except in the cells
    of ``fpr``, where that fraction of the 10 OOD images does. Records every call."""

    def __init__(self, survey_fpr: dict, exact_fpr: dict, shape=(10, 21)):
        self.survey_fpr, self.exact_fpr, self.shape, self.calls = survey_fpr, exact_fpr, shape, []

    @staticmethod
    def _side(side, fpr):
        return np.full(10, 0.5) if side == "in" else np.where(np.arange(10) < round(10 * fpr), 0.9, 0.1)

    def survey(self, side, direction, eps):
        self.calls.append(("survey", side, direction, tuple(eps)))
        return np.stack(
            [[self._side(side, self.survey_fpr.get((i, j), 1.0)) for j in eps] for i in range(self.shape[0])]
        )

    def exact(self, side, t, eps):
        self.calls.append(("exact", side, t, tuple(eps)))
        return np.stack([self._side(side, self.exact_fpr.get((t, j), self.survey_fpr.get((t, j), 1.0))) for j in eps])


def test_survey_epsilons_on_the_paper_grid_are_every_second_step_and_zero():
    assert [PAPER_EPSILONS[j] for j in survey_epsilons(PAPER_EPSILONS)] == [0.0] + [
        round(0.0004 * k, 4) for k in range(1, 11)
    ]
    assert survey_epsilons((0.0, 0.001)) == [0, 1] and survey_epsilons((0.0,)) == [0]
    assert grid_passes(10, PAPER_EPSILONS) == 211 and worst_case_passes(PAPER_EPSILONS) == 20
    assert planned_passes("shared", (1.0, 1000.0), (0.0, 0.0014)) == 5  # a 2 x 2 grid: the whole grid is cheaper


def test_pass_count_hand_worked_best_cell_off_the_direction_row():
    # surveyed best (T=5, eps=0.0008): verify eps 0.0006, 0.0008, 0.001 at T=5 -> 2 + 3 passes;
    # next best surveyed (T=100, eps=0.0016): 2 + 1; survey 1 + 1 + 10: 20 in all
    b = TableBackend({(2, 4): 0.0, (6, 8): 0.2}, {(2, 3): 0.1})
    r = shared_search(b, PAPER_TEMPERATURES, PAPER_EPSILONS)
    assert r.passes_per_image == 12 + 5 + 3 == 20
    assert [c for c in b.calls if c[1] == "in"] == [
        ("survey", "in", 9, tuple(survey_epsilons(PAPER_EPSILONS))),
        ("exact", "in", 2, (3, 4, 5)),
        ("exact", "in", 6, (8,)),
    ]
    assert r.index == (2, 4) and sorted(r.verified) == [(2, 3), (2, 4), (2, 5), (6, 8)]
    assert r.metrics["fpr_at_95_tpr"][2, 3] == pytest.approx(0.1) and np.isnan(r.metrics["fpr_at_95_tpr"][3, 3])


def test_pass_count_hand_worked_best_cell_on_the_direction_row_needs_only_its_neighbours():
    # best (T=1000, eps=0.002) is exact from the survey; its neighbours 0.0018, 0.0022 at T=1000
    # cost 2 + 2; the next best surveyed cell (T=1, eps=0.004): 2 + 1; 12 + 4 + 3 = 19
    b = TableBackend({(9, 10): 0.0, (0, 20): 0.3}, {})
    r = shared_search(b, PAPER_TEMPERATURES, PAPER_EPSILONS)
    assert r.passes_per_image == 19 and r.verified == [(0, 20), (9, 9), (9, 11)] and r.index == (9, 10)


@pytest.fixture(scope="module")
def lenet_mnist(shared_data):
    model = models.load("mnist-lenet")
    mean, std = torch.tensor(model.input_mean).view(1, -1, 1, 1), torch.tensor(model.input_std).view(1, -1, 1, 1)
    x_in = data.load("mnist", root=shared_data).images[:160].float() / 255.0
    x_out = data.load("notmnist", root=shared_data).images[:160].float() / 255.0
    return model, (x_in - mean) / std, (x_out - mean) / std


def test_passes_counted_on_the_model_equal_the_reported_count(lenet_mnist):
    model, x_in, x_out = lenet_mnist
    bar = CountingBar(total=None)
    meter = PassProgress(None, 1.0, "", bar=bar)  # 1 pass per "image": the bar counts image-passes
    with meter.watching(model):
        r = tune(model, x_in, x_out, input_std=model.input_std, batch_size=40, search="shared")
    assert r.search == "shared" and r.passes_per_image <= 20
    assert bar.n == r.passes_per_image * (len(x_in) + len(x_out))
    with meter.watching(model):
        g = tune(model, x_in[:40], x_out[:40], input_std=model.input_std, batch_size=40)
    assert g.search == "grid" and bar.n - r.passes_per_image * 320 == 211 * 80 == g.passes_per_image * 80


def test_survey_is_exact_on_the_direction_row_and_at_epsilon_zero_and_close_elsewhere(lenet_mnist):
    model, x, _ = lenet_mnist
    eps = [0.0, 0.0014]
    s = odin_shared_direction_scores(model, x[:32], PAPER_TEMPERATURES, eps, 1000.0, model.input_std)
    grid = odin_grid_scores(model, x[:32], PAPER_TEMPERATURES, eps, model.input_std)
    assert torch.equal(s[-1], grid[-1]) and torch.equal(s[:, 0], grid[:, 0])
    assert torch.equal(s[-1, 1], odin_scores(model, x[:32], 1000.0, 0.0014, model.input_std, normalise=False))
    assert (s[5:, 1] - grid[5:, 1]).abs().max() < 1e-3  # T >= 50: the directions' signs agree


def test_shared_search_picks_a_cell_as_good_as_the_grids_best_on_real_mnist(lenet_mnist):
    model, x_in, x_out = lenet_mnist
    grid = Detector(model, search="grid", normalise=False).fit(x_in, x_out).tuning_  # given the model's input
    shared = Detector(model, normalise=False).fit(x_in, x_out).tuning_
    fpr = grid.metrics["fpr_at_95_tpr"]
    assert shared.search == "shared" and grid.search == "grid"
    assert fpr[shared.index] == fpr.min() == shared.value  # the grid's optimum (up to ties), scored exactly
    i, j = shared.index
    assert np.array_equal(shared.scores_in[i, j], grid.scores_in[i, j])


def test_search_grid_is_the_paper_procedure_unchanged(lenet_mnist):
    model, x_in, x_out = lenet_mnist
    det = Detector(model, search="grid", normalise=False).fit(x_in[:64], x_out[:64])
    ref = tune(model, x_in[:64], x_out[:64], input_std=model.input_std)  # tune's default: the grid
    assert (det.temperature_, det.epsilon_) == (ref.temperature, ref.epsilon)
    for m, v in ref.metrics.items():
        assert np.array_equal(det.tuning_.metrics[m], v)
    assert np.array_equal(det.tuning_.scores_in, ref.scores_in) and ref.passes_per_image == 211


def test_progress_advances_at_every_pass_of_every_sub_batch(lenet_mnist):
    model, x, _ = lenet_mnist
    bar = CountingBar(total=64)
    meter = PassProgress(64, 1 + 2 * (1 + 2), "", bar=bar)  # a 2 x 3 grid, two epsilons > 0
    with meter.watching(model):
        odin_grid_scores(model, x[:32], (1.0, 1000.0), (0.0, 0.001, 0.002), model.input_std)
        odin_grid_scores(model, x[32:64], (1.0, 1000.0), (0.0, 0.001, 0.002), model.input_std)
    # per sub-batch: one forward with a graph, two backwards, four forwards of x~: 7 updates of 32/7
    assert len(bar.updates) == 14 and bar.updates[:7] == [32 / 7] * 7 and bar.n == pytest.approx(64)
