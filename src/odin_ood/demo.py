"""`odin-ood demo`: the whole ODIN pipeline offline, on data shipped inside the package.

The classifier is the shipped ``mnist-lenet``: the model on which odin-ood reproduces the MNIST
rows of the paper's Table 3 (``docs/results/mnist``; the paper's own MLP, rebuilt from its
published recipe, does not reach them). The embedded sample holds 1,000 MNIST test digits
(in-distribution), 1,000 Omniglot characters and 1,000 notMNIST letters. Half the digits and
half the letters of ONE out-of-distribution set, :data:`TUNING_SET` (seeded halves), tune
(T, epsilon) and set the 95%-TPR threshold (section 4.4), over the paper's 10 temperatures and
every 4th of its 21 epsilons (0, 0.0008, ..., 0.004: the full grid takes minutes on a CPU for a
CNN). The other half of the digits is then evaluated against four sets never seen in tuning:
Omniglot as stored (black strokes on white), Omniglot inverted (white on black, MNIST's
polarity), fresh Gaussian and Uniform noise (section 4.2). Writes ``detector.json``,
``demo.json``, ``scores.png`` and ``summary.html``.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from odin_ood._utils.files import write_file
from odin_ood._version import __version__
from odin_ood.assets import demo_sample, model_info
from odin_ood.data.noise import gaussian_noise, uniform_noise
from odin_ood.detector import Detector
from odin_ood.detector.fingerprint import fingerprint
from odin_ood.metrics import METRICS, evaluate, roc_points
from odin_ood.models import load as load_model
from odin_ood.tuning.grid import PAPER_EPSILONS, PAPER_TEMPERATURES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MODEL = "mnist-lenet"
TUNING_SET = "notMNIST"
EPSILONS = PAPER_EPSILONS[::4]
BATCH = 1000  # a small CNN on a CPU runs ~4x faster per image in batches of 1,000 than of 128
HEADLINE = (
    "Tuned on typeset letters (notMNIST) only, ODIN tells MNIST digits from unseen handwritten "
    "characters and noise better than the max-softmax baseline"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="odin-ood-demo", help="output folder (default: ./odin-ood-demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tune/evaluate split and the noise")


def run(args: argparse.Namespace) -> int:
    result = run_demo(Path(args.out), seed=args.seed)
    print(format_table(result))
    print(f"\nwrote {args.out}/summary.html, scores.png, demo.json and detector.json")
    return 0


def demo_sets(n_noise: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(the 1,000 embedded MNIST digits, {name: OOD images}) as [0, 1] pixels."""
    sample = demo_sample()
    omniglot = sample["omniglot"].tensors()[0]
    shape = tuple(omniglot.shape[1:])
    return sample["mnist"].tensors()[0], {
        "notMNIST": sample["notmnist"].tensors()[0],
        "Omniglot": omniglot,
        "Omniglot (inverted)": 1.0 - omniglot,
        "Gaussian": gaussian_noise(n_noise, shape, seed + 1000),
        "Uniform": uniform_noise(n_noise, shape, seed + 1001),
    }


def run_demo(out: Path, seed: int = 0, progress: bool = True) -> dict:
    """Run the demo and write its files to ``out``; returns what ``demo.json`` holds."""
    torch.manual_seed(seed)
    steps = tqdm(total=5, desc="odin-ood demo", disable=not progress, unit="step")
    model = load_model(MODEL)
    digits, ood = demo_sets(500, seed)
    inputs = {"MNIST": digits, **ood}  # pixels in [0, 1]: the detector normalises them (normalise=True below)
    rng = np.random.default_rng(seed)
    perm = torch.from_numpy(rng.permutation(len(digits)))
    id_tune, id_eval = inputs["MNIST"][perm[: len(perm) // 2]], inputs["MNIST"][perm[len(perm) // 2 :]]
    ood_tune = inputs[TUNING_SET][torch.from_numpy(rng.permutation(len(inputs[TUNING_SET])))[: len(perm) // 2]]
    steps.set_postfix_str("loaded model and sample")
    steps.update()

    detector = Detector(
        model, temperatures=PAPER_TEMPERATURES, epsilons=EPSILONS, batch_size=BATCH, normalise=True
    ).fit(id_tune, ood_tune, tpr=0.95)
    steps.set_postfix_str(f"tuned T={detector.temperature_:g}, eps={detector.epsilon_:g}")
    steps.update()

    unseen = {name: x for name, x in inputs.items() if name not in ("MNIST", TUNING_SET)}
    evaluated = {"MNIST": id_eval, **unseen}
    # one pass per set: the outputs carry ODIN's score, the decision and MSP (the softmax of the
    # unperturbed logits that ODIN's first forward computes)
    outputs = {name: detector.outputs(x) for name, x in evaluated.items()}
    msp = {name: o["confidence"] for name, o in outputs.items()}
    steps.update()
    odin = {name: o["score"] for name, o in outputs.items()}
    steps.update()

    rows: list[dict[str, Any]] = [
        {
            "ood": name,
            "n": len(x),
            "msp": evaluate(msp["MNIST"], msp[name]),
            "odin": evaluate(odin["MNIST"], odin[name]),
            "flagged_ood": float(outputs[name]["is_out_of_distribution"].float().mean()),
        }
        for name, x in unseen.items()
    ]
    wins = [
        r["ood"]
        for r in rows
        if r["odin"]["fpr_at_95_tpr"] < r["msp"]["fpr_at_95_tpr"] and r["odin"]["auroc"] > r["msp"]["auroc"]
    ]
    out.mkdir(parents=True, exist_ok=True)
    detector.model_spec_ = MODEL
    detector.save(out / "detector.json")
    info = model_info(MODEL)
    result = {
        "odin_ood_version": __version__,
        "headline": HEADLINE,
        "model": f"{MODEL} (shipped)",
        "model_test_accuracy": info.get("test_accuracy"),
        "model_fingerprint": fingerprint(model),
        "tuning_set": TUNING_SET,
        "grid": {"temperatures": list(PAPER_TEMPERATURES), "epsilons": list(EPSILONS)},
        "split": f"{len(id_tune)} MNIST + {len(ood_tune)} {TUNING_SET} tune; {len(id_eval)} unseen "
        f"MNIST vs " + ", ".join(f"{len(x)} {name}" for name, x in unseen.items()) + f" evaluated (seed {seed})",
        "temperature": detector.temperature_,
        "epsilon": detector.epsilon_,
        "threshold": detector.threshold_,
        "id_kept": float(1 - detector.predict(id_eval).float().mean()),
        "odin_better_on": wins,
        "rows": rows,
    }
    write_file(out / "demo.json", json.dumps(result, indent=2) + "\n", "demo", "--out")
    png = plot_scores(msp, odin, out / "scores.png", detector.threshold_)
    write_file(out / "summary.html", summary_html(result, png), "demo", "--out")
    steps.set_postfix_str(f"wrote {out}")
    steps.update()
    steps.close()
    return result


def format_table(result: dict) -> str:
    lines = [
        f"ODIN demo: {result['model']} (MNIST test accuracy {result['model_test_accuracy']:.2%}); {result['split']}",
        f"tuned on {result['tuning_set']} only: T = {result['temperature']:g}, epsilon = {result['epsilon']:g}; "
        f"threshold delta = {result['threshold']:.6f} keeps {result['id_kept']:.1%} of unseen MNIST",
        "",
        f"{'unseen OOD set':<20}" + "".join(f"{m:>22}" for m in METRICS),
        f"{'':<20}" + "".join(f"{'MSP / ODIN (%)':>22}" for _ in METRICS),
    ]
    for row in result["rows"]:
        cells = "".join(f"{100 * row['msp'][m]:>14.1f} / {100 * row['odin'][m]:<5.1f}" for m in METRICS)
        lines.append(f"{row['ood']:<20}{cells}")
    lines += [
        "",
        f"{result['headline']} (lower FPR at 95% TPR and higher AUROC on "
        f"{len(result['odin_better_on'])} of {len(result['rows'])} "
        f"unseen sets: {', '.join(result['odin_better_on'])}).",
    ]
    return "\n".join(lines)


def plot_scores(msp: dict, odin: dict, path: Path, threshold: float) -> bytes:
    """Write :func:`scores_figure` to ``path`` as PNG; returns the PNG bytes."""
    from odin_ood.report.style import png_bytes

    png = png_bytes(scores_figure(msp, odin, threshold), dpi=100)
    write_file(path, png, "demo", "--out")
    return png


def scores_figure(msp: dict, odin: dict, threshold: float) -> Figure:
    """Score histograms (MNIST against each OOD set, outlined so none hides another) for MSP and
    ODIN, with ODIN's threshold, and the ROC curves of both on inverted Omniglot with the 95%-TPR line."""
    from odin_ood.report.style import ID_COLOUR, colours, figure, reference_line, step_histograms

    fig, axes = figure(1, 3, figsize=(16, 4.6))
    colour = {"MNIST": ID_COLOUR, **colours([k for k in msp if k != "MNIST"])}
    labels = {"MNIST": "MNIST (ID)"}
    for ax, (title, scores) in zip(axes[:2], [("MSP (baseline)", msp), ("ODIN", odin)], strict=True):
        step_histograms(ax, {k: s.numpy() for k, s in scores.items()}, colour, labels=labels)
        if title == "ODIN":
            reference_line(ax, threshold, f"threshold {threshold:.4g} (95% TPR)", "v", color="k", ls="--")
        ax.set(title=f"{title} score", xlabel="score (higher = more in-distribution)", ylabel="density")
        ax.legend(fontsize=8, loc="upper right" if title == "ODIN" else "upper center")  # clear of data and line
    for title, scores, style in [("ODIN", odin, "-"), ("MSP", msp, "--")]:  # dashed over solid: both stay visible
        p = roc_points(scores["MNIST"], scores["Omniglot (inverted)"])
        axes[2].plot(np.r_[0, p.fpr], np.r_[0, p.tpr], style, color="tab:blue" if title == "ODIN" else "k", label=title)
    reference_line(axes[2], 0.95, "95% TPR")
    axes[2].set(title="ROC, MNIST vs Omniglot inverted (unseen)", xlabel="FPR", ylabel="TPR")
    axes[2].legend(loc="lower right")
    return fig


def summary_html(result: dict, png: bytes) -> str:
    """A self-contained page (inline CSS and image, nothing fetched)."""
    header = "".join(f"<th>{html.escape(m)}<br>MSP / ODIN</th>" for m in METRICS)
    body = "".join(
        f"<tr><td>{html.escape(r['ood'])}</td>"
        + "".join(f"<td>{100 * r['msp'][m]:.1f} / <b>{100 * r['odin'][m]:.1f}</b></td>" for m in METRICS)
        + f"<td>{100 * r['flagged_ood']:.1f}</td></tr>"
        for r in result["rows"]
    )
    image = base64.b64encode(png).decode()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>odin-ood demo</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>odin-ood demo</h1>
<p><b>{html.escape(result["headline"])}.</b></p>
<p>{html.escape(result["model"])}, test accuracy {100 * result["model_test_accuracy"]:.2f}% on MNIST;
{html.escape(result["split"])}.</p>
<p>Tuned on {html.escape(result["tuning_set"])} only (paper's temperatures, every 4th of its epsilons; minimum FPR
at 95% TPR): <b>T = {result["temperature"]:g}</b>,
<b>&epsilon; = {result["epsilon"]:g}</b>; threshold &delta; = {result["threshold"]:.6f}, which keeps
{100 * result["id_kept"]:.1f}% of unseen MNIST digits.</p>
<table><tr><th>OOD set</th>{header}<th>flagged OOD (%)</th></tr>{body}</table>
<p>All values in %. ID (MNIST) is the positive class; FPR at the first threshold with TPR &ge; 95%;
detection error 0.5(1-TPR)+0.5FPR there; AUPR as average precision. None of the four sets
above was seen in tuning. ODIN has lower FPR and higher AUROC than MSP on:
{html.escape(", ".join(result["odin_better_on"]) or "none")}.</p>
<img alt="score histograms and ROC curves" src="data:image/png;base64,{image}">
<p>odin-ood {html.escape(result["odin_ood_version"])}; model {html.escape(result["model_fingerprint"])}.</p>
</body></html>
"""
