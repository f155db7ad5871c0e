"""No image sits in both a tuning and an evaluation split of any suite, checked by content (the
sha256 of the decoded pixels), with the splits the runner draws (``experiments.run._score``)."""

from __future__ import annotations

import pytest

from odin_ood.data.content import content_hashes
from odin_ood.experiments import suites
from odin_ood.experiments.loading import load_spec
from odin_ood.experiments.protocol import dataset_seed, split_indices

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class _Shape:
    """Stands in for a model where only ``input_shape`` is read (the noise sets' shape)."""

    def __init__(self, name: str) -> None:
        from odin_ood.models import spec

        self.input_shape = spec(name).input_shape


def _tune_and_eval_hashes(suite: suites.Suite, root, seed: int = 0) -> tuple[dict[str, set], dict[str, set], list]:
    tune, evaluate, loaded = {}, {}, []
    specs = [(s, suite.id_tune) for s in suite.id_candidates[:1]] + [(s, suite.ood_tune) for s in suite.ood]
    for spec, n_tune in specs:
        try:
            ds = load_spec(spec, root, _Shape(suite.model))
        except (FileNotFoundError, ValueError, KeyError):
            continue
        split = split_indices(len(ds), min(n_tune, len(ds) // 2), dataset_seed(seed, spec.key))
        hashes = content_hashes(ds.images.numpy())
        tune[spec.key] = {hashes[i] for i in split.tune}
        evaluate[spec.key] = {hashes[i] for i in split.eval}
        loaded.append(spec.key)
    return tune, evaluate, loaded


def _assert_disjoint(tune: dict[str, set], evaluate: dict[str, set]) -> None:
    all_tune = set().union(*tune.values())
    for key, hashes in evaluate.items():
        shared = hashes & all_tune
        assert not shared, f"{len(shared)} images of {key}'s evaluation split are also in a tuning split"


@pytest.mark.parametrize("name", ["mnist-lenet", "mnist-mlp"])
def test_mnist_suites_tuning_and_evaluation_splits_are_disjoint_by_content(name, shared_data):
    tune, evaluate, loaded = _tune_and_eval_hashes(suites.get(name), shared_data)
    assert loaded == ["mnist", "omniglot", "omniglot-inverted", "notmnist", "cifar10bw", "gaussian", "uniform"]
    _assert_disjoint(tune, evaluate)


def test_the_check_catches_a_duplicate_across_the_split(shared_data):
    """notMNIST as stored holds repeated glyphs: without de-duplication its split shares images."""
    spec = suites.DataSpec("notmnist", "notMNIST", "notmnist", {"deduplicate": False}, "notmnist")
    suite = suites.Suite("t", "t", "mnist-mlp", None, (spec,), (), None)
    tune, evaluate, _ = _tune_and_eval_hashes(suite, shared_data)
    with pytest.raises(AssertionError, match="also in a tuning split"):
        _assert_disjoint(tune, evaluate)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in suites.SUITES if not n.startswith("mnist")])
def test_cifar_suites_tuning_and_evaluation_splits_are_disjoint_by_content(name, shared_data):
    tune, evaluate, loaded = _tune_and_eval_hashes(suites.get(name), shared_data)
    if not loaded:
        pytest.skip(f"no data of suite {name} here")
    _assert_disjoint(tune, evaluate)
