"""Suite definitions: which model, which in-distribution set, which OOD sets, and which rows of
the paper they correspond to. Every (model, ID, OOD) pair of the paper's Tables 2, 3 and 12 is
covered by some suite; suites or sets whose files are missing are reported as skipped, with the
reason, when run.

A :class:`DataSpec` names a loader of :func:`odin_ood.data.load` and its keyword arguments; the
noise loaders get the model's input shape added at run time. ``paper_key`` names the OOD set in
:mod:`odin_ood.experiments.paper` (the same key for both downsampling variants of a resize set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from odin_ood.tuning.grid import PAPER_EPSILONS, PAPER_TEMPERATURES

NOISE_LOADERS = ("gaussian", "uniform")
QUICK_TEMPERATURES = (1.0, 10.0, 100.0, 1000.0)
QUICK_EPSILONS = (0.0, 0.0006, 0.0014, 0.0024)
# CIFAR networks cost ~100x the MLP per pass on a CPU: their quick grid keeps only MSP's cell
# and the paper's DenseNet parameters (T = 1000, eps = 0.0014).
QUICK_TEMPERATURES_CIFAR = (1.0, 1000.0)
QUICK_EPSILONS_CIFAR = (0.0, 0.0014)


@dataclass(frozen=True)
class DataSpec:
    """One dataset of a suite: ``key`` (unique in the suite), a human ``label``, the registry
    ``loader`` name with ``kwargs``, and ``paper_key`` (the paper's name for this set, or None)."""

    key: str
    label: str
    loader: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    paper_key: str | None = None


@dataclass(frozen=True)
class Suite:
    """An experiment suite.

    ``weights``: path of the checkpoint relative to the data root (None: shipped model, or the
    user must pass ``--weights``); ``id_candidates``: ID sets tried in order (the first that
    loads is used, e.g. the full CIFAR-10 test set before the lossless first 1,000);
    ``paper_row``: the paper's table row (None if the paper has no such model; then
    ``reference_row`` is shown, labelled as another model's); ``id_tune``: ID images held out
    for tuning (at most half of the ID set is used).
    """

    name: str
    description: str
    model: str
    weights: str | None
    id_candidates: tuple[DataSpec, ...]
    ood: tuple[DataSpec, ...]
    paper_row: str | None
    reference_row: str | None = None
    id_tune: int = 1000
    ood_tune: int = 1000
    num_classes: int | None = None
    requires_weights_argument: bool = False
    quick_limit: int = 100
    quick_grid: tuple[tuple[float, ...], tuple[float, ...]] = (QUICK_TEMPERATURES_CIFAR, QUICK_EPSILONS_CIFAR)
    full_grid_on_cpu: bool = False  # score every image at every cell on a CPU too (cheap models)

    @property
    def paper_label(self) -> str | None:
        return self.paper_row or self.reference_row


def _noise() -> tuple[DataSpec, ...]:
    return (
        DataSpec("gaussian", "Gaussian", "gaussian", {"count": 10_000, "seed": 101}, "gaussian"),
        DataSpec("uniform", "Uniform", "uniform", {"count": 10_000, "seed": 102}, "uniform"),
    )


def _natural_cifar_ood() -> tuple[DataSpec, ...]:
    return (
        DataSpec("tinyimagenet-crop", "TinyImageNet (crop)", "tinyimagenet-crop", {"seed": 0}, "tinyimagenet-crop"),
        DataSpec(
            "tinyimagenet-resize",
            "TinyImageNet (resize, bilinear: paper-like)",
            "tinyimagenet-resize",
            {"method": "bilinear"},
            "tinyimagenet-resize",
        ),
        DataSpec(
            "tinyimagenet-resize-aa",
            "TinyImageNet (resize, antialiased)",
            "tinyimagenet-resize",
            {"method": "bilinear-antialias"},
            "tinyimagenet-resize",
        ),
        DataSpec(
            "tinyimagenet-resize-nearest",
            "TinyImageNet (resize, nearest)",
            "tinyimagenet-resize",
            {"method": "nearest"},
            "tinyimagenet-resize",
        ),
        DataSpec(
            "tinyimagenet-resize-box",
            "TinyImageNet (resize, box)",
            "tinyimagenet-resize",
            {"method": "box"},
            "tinyimagenet-resize",
        ),
        DataSpec(
            "tinyimagenet-crop-published",
            "TinyImageNet (crop), paper's folder",
            "tinyimagenet-crop",
            {"published": True},
            "tinyimagenet-crop",
        ),
        DataSpec(
            "tinyimagenet-resize-published",
            "TinyImageNet (resize), paper's folder",
            "tinyimagenet-resize",
            {"published": True},
            "tinyimagenet-resize",
        ),
        DataSpec("lsun-crop", "LSUN (crop), paper's folder", "lsun-crop", {}, "lsun-crop"),
        DataSpec("lsun-resize", "LSUN (resize), paper's folder", "lsun-resize", {}, "lsun-resize"),
        DataSpec("isun", "iSUN, paper's folder", "isun", {}, "isun"),
    )


_CIFAR10_ID = (
    DataSpec("cifar10", "CIFAR-10 test (official pickles, 10,000)", "cifar10", {}, None),
    DataSpec("cifar10-lossless-1000", "CIFAR-10 test, lossless first 1,000", "cifar10-lossless-1000", {}, None),
)
_CIFAR100_ID = (DataSpec("cifar100", "CIFAR-100 test", "cifar100", {}, None),)
_CIFAR80_ID = (DataSpec("cifar80", "CIFAR-80 test (seeded 80/20 class split)", "cifar80", {}, None),)

_C10_OOD = _natural_cifar_ood() + _noise() + (DataSpec("cifar100", "CIFAR-100 (Table 12)", "cifar100", {}, "cifar100"),)
_C100_OOD = _natural_cifar_ood() + _noise() + (DataSpec("cifar10", "CIFAR-10 (Table 12)", "cifar10", {}, "cifar10"),)
_C80_OOD = (DataSpec("cifar20", "CIFAR-20", "cifar20", {}, "cifar20"), *_natural_cifar_ood(), *_noise())


def _mnist_ood() -> tuple[DataSpec, ...]:
    """Appendix A.1's OOD sets, built as recorded in each manifest: Omniglot from Hendrycks &
    Gimpel's safe alphabets, de-duplicated, in both polarities; notMNIST de-duplicated;
    CIFAR-10bw resized bilinearly as their notebook (``tf.image.resize_images``)."""
    omniglot = {"alphabets": "hendrycks-gimpel", "method": "box"}
    return (
        DataSpec(
            "omniglot", "Omniglot (black on white, as stored)", "omniglot", omniglot | {"invert": False}, "omniglot"
        ),
        DataSpec(
            "omniglot-inverted",
            "Omniglot (inverted: white on black)",
            "omniglot",
            omniglot | {"invert": True},
            "omniglot",
        ),
        DataSpec("notmnist", "notMNIST", "notmnist", {"deduplicate": True}, "notmnist"),
        DataSpec("cifar10bw", "CIFAR-10bw", "cifar10bw", {"method": "bilinear"}, "cifar10bw"),
        *_noise(),
    )


def _mnist_suite(name: str, model: str, row: str | None, reference: str | None, description: str) -> Suite:
    return Suite(
        name=name,
        description=description,
        model=model,
        weights=None,
        id_candidates=(DataSpec("mnist", "MNIST test", "mnist", {}, None),),
        ood=_mnist_ood(),
        paper_row=row,
        reference_row=reference,
        id_tune=1000,
        quick_limit=300,
        quick_grid=(QUICK_TEMPERATURES, QUICK_EPSILONS),
        full_grid_on_cpu=True,
    )


def _cifar_suite(
    name: str,
    model: str,
    weights: str | None,
    id_sets: tuple[DataSpec, ...],
    ood: tuple[DataSpec, ...],
    row: str | None,
    **kw: Any,
) -> Suite:
    return Suite(
        name=name,
        description=kw.pop("description"),
        model=model,
        weights=weights,
        id_candidates=id_sets,
        ood=ood,
        paper_row=row,
        **kw,
    )


SUITES: dict[str, Suite] = {
    s.name: s
    for s in [
        _mnist_suite(
            "mnist-lenet",
            "mnist-lenet",
            None,
            "MNIST",
            "The small CNN shipped with odin-ood (PyTorch's MNIST example; not the paper's network) vs "
            "Omniglot (both polarities), notMNIST, CIFAR-10bw and noise; the paper's MNIST MLP row "
            "(Table 3) for reference",
        ),
        _mnist_suite(
            "mnist-mlp",
            "mnist-mlp",
            "MNIST",
            None,
            "The paper's MNIST classifier (Hendrycks & Gimpel's MLP, rebuilt from their published recipe "
            "and shipped with odin-ood) vs Omniglot (both polarities), notMNIST, CIFAR-10bw and noise "
            "(Table 3, MNIST rows)",
        ),
        _cifar_suite(
            "cifar10-densenet",
            "densenet-bc-100",
            "models/densenet-bc-100-cifar10.pth.tar",
            _CIFAR10_ID,
            _C10_OOD,
            "Dense-BC CIFAR-10",
            id_tune=1000,
            description="DenseNet-BC-100 trained on CIFAR-10 (Table 2, Dense-BC CIFAR-10 rows; Table 12)",
        ),
        _cifar_suite(
            "cifar10-resnet20",
            "resnet20",
            "models/resnet20-cifar10.th",
            _CIFAR10_ID,
            _C10_OOD,
            None,
            reference_row="Dense-BC CIFAR-10",
            description="ResNet-20 trained on CIFAR-10: ODIN across architectures (no ResNet-20 in the "
            "paper; its Dense-BC CIFAR-10 numbers and parameters are shown for reference)",
        ),
        _cifar_suite(
            "cifar10-jpeg",
            "densenet-bc-100",
            None,
            (DataSpec("cifar10-jpeg", "CIFAR-10 JPEG test (10,000)", "cifar10-jpeg", {}, None),),
            _C10_OOD,
            None,
            reference_row="Dense-BC CIFAR-10",
            requires_weights_argument=True,
            description="A model trained on JPEG CIFAR-10 with `odin-ood train` (pass --weights; the "
            "architecture is read from the checkpoint); ID = the JPEG test set",
        ),
        _cifar_suite(
            "cifar100-densenet",
            "densenet-bc-100",
            "models/densenet-bc-100-cifar100.pth.tar",
            _CIFAR100_ID,
            _C100_OOD,
            "Dense-BC CIFAR-100",
            num_classes=100,
            description="DenseNet-BC-100 trained on CIFAR-100 (Table 2; Table 12)",
        ),
        _cifar_suite(
            "cifar10-wrn-28-10",
            "wrn-28-10",
            "models/wrn-28-10-cifar10.pth",
            _CIFAR10_ID,
            _C10_OOD[:-1],
            "WRN-28-10 CIFAR-10",
            description="Wide ResNet-28-10 trained on CIFAR-10 (Table 2)",
        ),
        _cifar_suite(
            "cifar100-wrn-28-10",
            "wrn-28-10",
            "models/wrn-28-10-cifar100.pth",
            _CIFAR100_ID,
            _C100_OOD[:-1],
            "WRN-28-10 CIFAR-100",
            num_classes=100,
            description="Wide ResNet-28-10 trained on CIFAR-100 (Table 2)",
        ),
        _cifar_suite(
            "cifar10-wrn-40-4",
            "wrn-40-4",
            "models/wrn-40-4-cifar10.pth",
            _CIFAR10_ID,
            _C10_OOD[:-1],
            "WRN-40-4 CIFAR-10",
            description="Wide ResNet-40-4 trained on CIFAR-10 (Table 3)",
        ),
        _cifar_suite(
            "cifar100-wrn-40-4",
            "wrn-40-4",
            "models/wrn-40-4-cifar100.pth",
            _CIFAR100_ID,
            _C100_OOD[:-1],
            "WRN-40-4 CIFAR-100",
            num_classes=100,
            description="Wide ResNet-40-4 trained on CIFAR-100 (Table 3)",
        ),
        *(
            _cifar_suite(
                f"cifar80-{short}",
                arch,
                f"models/{arch}-cifar80.pth",
                _CIFAR80_ID,
                _C80_OOD,
                f"{row} CIFAR-80",
                num_classes=80,
                description=f"{row} trained on CIFAR-80, OOD includes CIFAR-20 (Table 3)",
            )
            for arch, short, row in (
                ("densenet-bc-100", "densenet", "Dense-BC"),
                ("wrn-28-10", "wrn-28-10", "WRN-28-10"),
                ("wrn-40-4", "wrn-40-4", "WRN-40-4"),
            )
        ),
    ]
}


@dataclass(frozen=True)
class Composite:
    """Suites run together by one ``odin-ood reproduce NAME`` and reported side by side."""

    parts: tuple[str, ...]
    description: str


COMPOSITES: dict[str, Composite] = {
    "mnist": Composite(
        ("mnist-lenet", "mnist-mlp"),
        "Table 3's MNIST rows are the paper's MLP, which the paper says is Hendrycks &amp; Gimpel's "
        "(99.34% accurate). mnist-mlp is that classifier rebuilt from their public notebook; mnist-lenet is a "
        "small CNN that is <b>not</b> the paper's network, shown because it reproduces Table 3. The paper does "
        "not say how its OOD sets were prepared: Omniglot is shown as stored (black strokes on white) and "
        "inverted (MNIST's polarity); which one matches Table 3 is evidence about the paper's preparation, not "
        "a statement of the paper. The paper's MNIST parameters are T = 1000, &epsilon; = 0 (Appendix A.2).",
    ),
}


def get(name: str) -> Suite:
    """The suite called ``name``; unknown names raise ``KeyError`` listing the known suites."""
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; known suites: {', '.join(SUITES)}")
    return SUITES[name]


def grid(suite: Suite, quick: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(temperatures, epsilons): the paper's full 10 x 21 grid, or the suite's reduced ``--quick``
    grid (mnist 4 x 4, CIFAR 2 x 2; each holds T = 1, eps = 0 and the paper's parameters)."""
    return suite.quick_grid if quick else (PAPER_TEMPERATURES, PAPER_EPSILONS)
