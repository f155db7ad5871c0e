"""``odin-ood fit``: fit an ODIN detector for a classifier from image folders, zips or datasets.

    odin-ood fit --model my_model.pt2 --id val_images/ --ood other_images/ --out det/

Inputs are read like ``odin-ood score``'s (:mod:`odin_ood.commands.inputs`) and preprocessed the
same way, deduplicated by content and split into a tuning and a held-out evaluation part
(:mod:`odin_ood.commands.heldout`). :meth:`odin_ood.Detector.fit` tunes (T, epsilon) on the tuning
part over the paper's grid (or ``--temperatures``/``--epsilons``) against the OOD inputs. Without
``--ood``, ``--ood-free`` says what tunes: ``noise`` (default), the paper's Gaussian + Uniform
noise as the OOD side (1,000 images of each at the model's input size,
:func:`~odin_ood.commands.fit_evaluation.noise_what`; said
in the output and in fit.json); ``id-only``, the ID tuning part alone (the epsilon with the highest mean ID
score at a fixed T, :func:`odin_ood.tuning.id_only_from_scores`; ``--temperatures`` unused). Passing
``--ood-free`` with ``--ood`` is an error, as it would be ignored. Either way the held-out metrics
are measured on the held-out OOD inputs, or on fresh noise without them. ``fit.json`` records
which source chose the parameters (``tuning_source``). The threshold is set at ``--tpr``. Written to
``--out``: ``detector.json`` (for ``score`` and ``serve``), ``fit.json`` (the whole record: grid,
splits with every image's source, held-out metrics) and ``fit_report.html``/``.png``.
``--precision bf16`` (or fp16, where the device has it) searches the grid and sets the threshold
with the model's arithmetic at that precision (:mod:`odin_ood.scores.precision`), so the threshold keeps
``--tpr`` of the ID images for scores at that precision, and the detector records it; with
``--runtime openvino`` the threshold is then set from that runtime's scores of the tuning ID images
at that precision (and the held-out metrics measured on them), since two reduced-precision
implementations round differently: the detector scores only there. A run is not resumable:
scoring the grid is one pass, rerun it whole. Memory is bounded in bytes
(:mod:`odin_ood.scores.memory`): batches hold what half of ``--max-memory`` allows (at most 128 images,
unless ``--batch-size``; the detector keeps that batch size for ``score``), and since fit holds its
images decoded, inputs that would take more than the other half are refused before any is read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from odin_ood._utils.files import refuse_link, write_file
from odin_ood._version import __version__
from odin_ood.commands.fit_evaluation import (
    Meter,
    evaluate_heldout,
    naming_non_finite,
    noise_count,
    noise_what,
    part,
    summary,
    threshold_on_runtime,
)
from odin_ood.commands.heldout import Selection, check_disjoint, select, split
from odin_ood.commands.inputs import Inputs
from odin_ood.commands.loading import apply_flags, check_bounds
from odin_ood.commands.options import ModelOptions, add_model_arguments, add_precision_argument, floats_arg
from odin_ood.detector import FILENAME, Detector
from odin_ood.preprocess import Preprocessing, of_model
from odin_ood.runtimes import RUNTIMES
from odin_ood.scores import memory, model_device
from odin_ood.scores.family import FIXED_TEMPERATURE, SCORES
from odin_ood.scores.precision import eager_support
from odin_ood.tuning.grid import (
    DEFAULT_OOD_FREE,
    ID_ONLY_TEMPERATURE,
    NOISE_SIZE,
    OOD_FREE,
    PAPER_EPSILONS,
    PAPER_TEMPERATURES,
    noise_ood_set,
)
from odin_ood.tuning.searches import DEFAULT_SEARCH, TUNE_SEARCHES, grid_passes
from odin_ood.tuning.shared import planned_passes

WITHOUT_OOD = {
    "id-only": "none: ID images only, the epsilon with the highest mean ID score at a fixed T "
    "(Generalized-ODIN criterion, Hsu et al. 2020, section 3.3)",
}

FIT_RECORD = "fit.json"


@dataclass(frozen=True)
class FitOptions:
    """What to fit on: ``id_inputs``/``ood_inputs`` (folders, zips, dataset names; without OOD
    inputs ``ood_free`` says what tunes), the grid, ``tpr``, the fraction ``holdout`` kept out of tuning for evaluation,
    ``limit`` (at most that many distinct images per side, a seeded random sample), ``seed``,
    ``score`` (:data:`odin_ood.scores.family.SCORES`; ODIN by default) and ``ood_free``
    (:data:`odin_ood.tuning.OOD_FREE`: what tunes when there are no OOD inputs) and ``search``
    (:data:`odin_ood.tuning.searches.SEARCHES`: how the grid is searched); ``runtime``: below fp32,
    the runtime whose scores set the threshold (:mod:`odin_ood.runtimes`)."""

    id_inputs: tuple[str, ...]
    ood_inputs: tuple[str, ...] = ()
    data_root: str | None = None
    tpr: float = 0.95
    temperatures: tuple[float, ...] = PAPER_TEMPERATURES
    epsilons: tuple[float, ...] = PAPER_EPSILONS
    holdout: float = 0.5
    limit: int | None = None
    seed: int = 0
    workers: int = 4
    progress: bool = True
    score: str = "odin"
    ood_free: str = DEFAULT_OOD_FREE
    search: str = DEFAULT_SEARCH
    runtime: str = "torch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--id",
        nargs="+",
        required=True,
        metavar="INPUT",
        help="in-distribution images (not used to train the model): folder, .zip, image or IDX file, dataset[:split]",
    )
    parser.add_argument(
        "--ood",
        nargs="+",
        default=[],
        metavar="INPUT",
        help="out-of-distribution images to tune against (without them: noise, see --ood-free)",
    )
    parser.add_argument("--out", required=True, help="output folder: detector.json, fit.json, fit_report.html/.png")
    add_model_arguments(parser)
    parser.add_argument("--data-root", default=None, help="data folder for dataset names (default: $ODIN_OOD_DATA)")
    parser.add_argument("--tpr", type=float, default=0.95, help="fraction of ID images the threshold keeps")
    parser.add_argument(
        "--temperatures",
        type=floats_arg,
        default=PAPER_TEMPERATURES,
        metavar="T,T,...",
        help="temperature grid (default: the paper's 1,2,5,...,1000)",
    )
    parser.add_argument(
        "--epsilons",
        type=floats_arg,
        default=PAPER_EPSILONS,
        metavar="E,E,...",
        help="epsilon grid in pixel units (default: the paper's 21 values in [0, 0.004])",
    )
    parser.add_argument(
        "--score",
        choices=SCORES,
        default="odin",
        help="the detector's score (default: ODIN; the others are its successors, see README)",
    )
    parser.add_argument(
        "--ood-free",
        choices=OOD_FREE,
        default=None,
        help=f"what tunes without --ood (an error with it; default {DEFAULT_OOD_FREE}): noise = "
        f"{NOISE_SIZE} Gaussian (each pixel N(0.5, 1) clipped to [0, 1]) + {NOISE_SIZE} Uniform "
        "(U[0, 1)) images at the model's input size as the OOD side (--limit N: N in all, split by "
        "--holdout), the held-out metrics against fresh noise, as many of each as held-out ID "
        "images; id-only = the ID images alone, the epsilon "
        f"with the highest mean ID score at a fixed T ({ID_ONLY_TEMPERATURE:g} for ODIN, "
        f"{FIXED_TEMPERATURE:g} for energy-odin; Generalized-ODIN criterion; --temperatures unused)",
    )
    parser.add_argument(
        "--search",
        choices=TUNE_SEARCHES,
        default=DEFAULT_SEARCH,
        help="how the T x epsilon grid is searched (default shared: one backward shared across "
        "temperatures, the best cells verified exactly, <= 20 passes per image on the paper's "
        "grid; grid: the paper's, every cell on every image, 211 passes)",
    )
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.5,
        help="fraction of each side kept out of tuning to evaluate on (0: tune on all)",
    )
    parser.add_argument("--limit", type=int, default=None, help="use at most this many images per side")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample order and the evaluation noise")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="image decoding threads")
    parser.add_argument("--overwrite", action="store_true", help="replace a detector.json already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_precision_argument(
        parser,
        "the grid is searched and the threshold set at it, so its TPR holds for scores "
        "at that precision (score and serve must then pass it)",
    )
    parser.add_argument(
        "--runtime",
        choices=sorted(RUNTIMES),
        default="torch",
        help="with --precision bf16 or fp16: the runtime whose scores at that precision set the "
        "threshold, the one score and serve must use (default torch; at fp32 every runtime "
        "agrees within the runtimes' tolerance)",
    )


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    for name in (FILENAME, FIT_RECORD):  # before any work: a link or a folder there is refused
        refuse_link(out / name, command="fit", option="--out")
    if (out / FILENAME).exists() and not args.overwrite:
        raise ValueError(f"{out / FILENAME} exists: choose another --out, or pass --overwrite")
    if args.ood and args.ood_free is not None:
        raise ValueError("--ood-free chooses what tunes without OOD inputs: pass --ood or --ood-free, not both")
    if args.runtime != "torch" and args.precision == "fp32":
        raise ValueError(
            "--runtime in fit chooses the runtime a reduced-precision threshold is fitted on; at fp32 every "
            "runtime scores within the tolerance of torch: pass --precision bf16 or fp16, or drop --runtime"
        )
    options = FitOptions(
        id_inputs=tuple(args.id),
        ood_inputs=tuple(args.ood),
        data_root=args.data_root,
        tpr=args.tpr,
        temperatures=tuple(args.temperatures),
        epsilons=tuple(args.epsilons),
        holdout=args.holdout,
        limit=args.limit,
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
        score=args.score,
        ood_free=args.ood_free or DEFAULT_OOD_FREE,
        search=args.search,
        runtime=args.runtime,
    )
    record = fit(ModelOptions.from_args(args), options, out)
    print(summary(record, out))
    return 0


def fit(model_options: ModelOptions, options: FitOptions, out: Path) -> dict[str, Any]:
    """Fit, write ``out/detector.json``, ``fit.json`` and the report; returns the record."""
    from odin_ood.report.fit_report import write_fit_report

    model = model_options.load_model()
    problem = eager_support(model_options.precision, model_device(model, torch.device("cpu")))
    if problem is not None:  # before any image is read
        raise ValueError(f"--precision {model_options.precision}: {problem}")
    spec = model_preprocessing(model, model_options)
    check_bounds(spec, model_options.max_memory)
    budget = model_options.max_memory
    id_inputs = Inputs(options.id_inputs, options.data_root, max_memory=budget)
    ood_inputs = Inputs(options.ood_inputs, options.data_root, max_memory=budget) if options.ood_inputs else None
    _check_memory(spec.input_shape, [id_inputs, ood_inputs], options.limit, model_options.max_memory)
    id_images = _select(id_inputs, spec, options, "ID")
    ood_images = _select(ood_inputs, spec, options, "OOD") if ood_inputs is not None else None
    if ood_images is not None:
        check_disjoint(id_images, ood_images)
    id_tune, id_eval = split(id_images, options.holdout)
    ood_tune, ood_eval = split(ood_images, options.holdout) if ood_images is not None else (None, None)

    batch = model_options.batch_size or memory.batch_for(model, spec.input_shape, model_options.max_memory)
    meter = Meter(model, options.progress)
    detector = Detector(
        model,
        temperatures=options.temperatures,
        epsilons=options.epsilons,
        batch_size=batch,
        score_family=options.score,
        ood_free=options.ood_free,
        preprocessing=spec,
        search=options.search,
        normalise=False,
        precision=model_options.precision,
    )  # the preprocessing normalised the images
    if ood_tune is not None:
        ood_data = ood_tune.x
    elif options.ood_free == "noise" and options.limit is not None:  # --limit caps the noise too
        ood_data = noise_ood_set(id_tune.x, noise_count(options.limit, options.holdout, "tuning"), spec.mean, spec.std)
    else:
        ood_data = None  # Detector.fit's own default
    n_out = len(ood_data) if ood_data is not None else (0 if options.ood_free == "id-only" else 2 * NOISE_SIZE)
    with (
        naming_non_finite(id_tune, ood_tune, "tuning"),
        meter.stage(f"tuning ({options.search} search)", len(id_tune) + n_out, _tuning_passes(options)),
    ):
        detector.fit(id_tune.x, ood_data, tpr=options.tpr)
    outputs: Callable[[Tensor], dict[str, Tensor]] = detector.outputs
    if options.runtime != "torch":
        outputs = threshold_on_runtime(detector, spec, id_tune.x, options.runtime, options.tpr, model_options.threads)
    result = detector.tuning_
    i, j = result.index
    record: dict[str, Any] = {
        "format": "odin-ood-fit",
        "odin_ood_version": __version__,
        "model": model_options.model,
        "weights": model_options.weights,
        "model_fingerprint": detector.model_fingerprint_,
        "preprocessing": spec.to_dict(),
        "temperature": detector.temperature_,
        "epsilon": detector.epsilon_,
        "threshold": detector.threshold_,
        "tpr": detector.tpr_,
        "objective": result.objective,
        "score": detector.score_family,
        "precision": detector.precision_,
        "runtime": detector.runtime_,
        "tuning_source": "ood-inputs" if ood_tune is not None else options.ood_free,
        "search": result.search,
        "passes_per_image": result.passes_per_image,
        "grid": {
            "temperatures": list(result.temperatures),
            "epsilons": list(result.epsilons),
            "chosen": [i, j],
            **{m: _nan_to_none(v) for m, v in result.metrics.items()},
        },
        "tuning": {
            "id": part(id_tune, what="the ID inputs"),
            "ood": part(
                ood_tune,
                count=result.scores_out.shape[-1],
                what="the OOD inputs"
                if ood_tune is not None
                else WITHOUT_OOD.get(options.ood_free) or noise_what(result.scores_out.shape[-1], spec.input_shape, 0),
            ),
        },
        "duplicates": {"id": id_images.duplicates, "ood": ood_images.duplicates if ood_images is not None else 0},
        "holdout": options.holdout,
        "limit": options.limit,
        "seed": options.seed,
        "heldout": None,
    }
    scores = {"id": result.scores_in[i, j], "ood": result.scores_out[i, j]}
    if id_eval is not None:
        with naming_non_finite(id_eval, ood_eval, "held-out"):
            noise = (options.limit, options.holdout, options.seed)
            record["heldout"], scores = evaluate_heldout(detector, id_eval, ood_eval, spec, noise, meter, outputs)
    record["histogram_split"] = "tuning" if id_eval is None else "held-out"
    out.mkdir(parents=True, exist_ok=True)
    detector.model_spec_, detector.weights_spec_ = model_options.model, model_options.weights  # named on a mismatch
    detector.save(out)
    write_file(out / FIT_RECORD, json.dumps(record, indent=1) + "\n", "fit", "--out")
    write_fit_report(out, record, scores)
    return record


def model_preprocessing(model: Any, options: ModelOptions) -> Preprocessing:
    """The model's own preprocessing (:func:`odin_ood.preprocess.of_model`: the library's
    evaluation transform, or the native size with no resizing) with the resize flags applied."""
    own = of_model(model)
    if own is None:
        raise ValueError(
            "the model does not say what input size it takes: pass --input-size C,H,W "
            "(and --input-mean/--input-std if it expects normalised inputs)"
        )
    given = {
        name: getattr(options, name)
        for name in ("resize", "interpolation", "resize_size")
        if getattr(options, name) is not None
    }
    return replace(apply_flags(own, given, max_side=options.max_side), min_side=options.min_side)


def _check_memory(shape: tuple[int, ...], sides: list[Inputs | None], limit: int | None, budget: int) -> None:
    """Refuse, before reading any image, inputs whose decoded images would take more than half of
    ``budget`` (fit holds them all: :func:`odin_ood.scores.memory.held_bytes`)."""
    n = sum(len(s) if limit is None else min(limit, len(s)) for s in sides if s is not None)
    need = memory.held_bytes(shape, n)
    if need > budget // 2:
        fits = budget // 2 // memory.held_bytes(shape, len([s for s in sides if s is not None]))
        raise ValueError(
            f"fit holds its {n} images decoded: {memory.readable(need)} at {'x'.join(map(str, shape))}, "
            f"over half of --max-memory ({memory.readable(budget)}): pass --limit {max(1, fits)} or "
            f"--max-memory {math.ceil(2 * need / 2**30)}GiB"
        )


def _select(inputs: Inputs, spec: Preprocessing, options: FitOptions, label: str) -> Selection:
    return select(inputs, spec, options.limit, options.seed, options.workers, options.progress, label)


def _tuning_passes(options: FitOptions) -> int:
    """Passes per tuning image the fit plans (the shared search's worst case)."""
    if options.score != "odin":
        return grid_passes(1, options.epsilons if options.score == "energy-odin" else (0.0,))
    if options.ood_free == "id-only" and not options.ood_inputs:
        return grid_passes(1, options.epsilons)
    return planned_passes(options.search, options.temperatures, options.epsilons)


def _nan_to_none(values: np.ndarray) -> list:
    """A grid as nested lists, cells the search did not score as None (JSON has no NaN)."""
    return [[None if np.isnan(v) else float(v) for v in row] for row in np.asarray(values, dtype=float)]
