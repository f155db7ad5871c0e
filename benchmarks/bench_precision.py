"""Reduced precision vs float32: how far ODIN's scores, decisions and metrics move, and how much faster.

Two modes, each one command that appends its table to benchmarks/RESULTS.md:

* ``--gate`` (the reduced-precision gate, issue 29): for each network (the shipped MNIST LeNet on
  MNIST vs notMNIST; ResNet-20 on CIFAR-10 lossless vs TinyImageNet (crop)) and each scoring path
  ``RUNTIME:PRECISION`` (torch:fp32 the reference, torch:bf16, onnxruntime:fp32, openvino:fp32,
  openvino:bf16, and fp16 where the device has it), ODIN at T = 1000, eps = 0.0014 with the
  threshold set as ``odin-ood fit --precision P --runtime R`` sets it (95% TPR of that path's own
  scores of the tuning ID images), then the same held-out ID and OOD images scored by every path,
  the paths taking turns within each of ``--repeats`` rounds. Per path: images/s (wall, and per CPU
  second: stable on a busy machine at one thread) and both over torch:fp32's, the share of
  decisions equal to torch:fp32's, the largest score difference, FPR@95 and AUROC and their change,
  and the held-out ID kept at the path's own threshold.

      python benchmarks/bench_precision.py --gate --threads 1

* default (the experiment suites): the suite's one-cell passes (``Scorer.cell_outputs``: ODIN
  at the paper's T, eps plus the logits) in both precisions on the same images: the whole ID set
  and the first ``--chunks`` cached chunks of each OOD set. Recorded per set: FPR@95 and AUROC of
  MSP and ODIN in each precision, the largest score difference and the share of images whose
  predicted class changes.

      python benchmarks/bench_precision.py --suite cifar10-densenet --sets tinyimagenet-crop gaussian
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import precision_gate as gate
from odin_ood.experiments import loading
from odin_ood.experiments.cache import ScoreCache
from odin_ood.experiments.every_image import msp_from_logits
from odin_ood.experiments.scorer import CELL_CHUNK, Scorer, images_sha256
from odin_ood.metrics import evaluate


def parser():
    p = common.suite_parser(__doc__.splitlines()[0], "cifar10-densenet", batch_size=64)
    p.add_argument("--gate", action="store_true", help="the reduced-precision gate on every runtime (see above)")
    p.add_argument("--networks", nargs="+", default=list(gate.NETWORKS), choices=list(gate.NETWORKS))
    p.add_argument(
        "--paths",
        nargs="+",
        default=None,
        metavar="RUNTIME:PRECISION",
        help="scoring paths, the first the reference (default: torch:fp32 torch:bf16 onnxruntime:fp32 "
        "openvino:fp32 openvino:bf16, plus the fp16 ones the device has)",
    )
    p.add_argument("--images", type=int, default=1000, help="--gate: held-out images per side (at most what is left)")
    p.add_argument("--tune-images", type=int, default=400, help="--gate: ID images that set each path's threshold")
    p.add_argument("--repeats", type=int, default=3, help="--gate: rounds of the timed passes")
    p.add_argument("--sets", nargs="+", default=["tinyimagenet-crop", "gaussian"])
    p.add_argument("--chunks", type=int, default=2, help=f"OOD chunks of {CELL_CHUNK} images per set")
    p.add_argument("--temperature", type=float, default=1000.0)
    p.add_argument("--epsilon", type=float, default=0.0014)
    p.add_argument(
        "--msp-sets",
        nargs="*",
        default=[],
        help="OOD sets whose MSP is also compared on EVERY image: fp32 logits (one forward, cached) vs "
        "the bf16 logits of the suite's finished every-image pass",
    )
    return p


def fp32_logits(scorer: Scorer, ds) -> np.ndarray:
    """fp32 logits of every image (no-grad forwards, cached by image content)."""
    key = {"model": scorer.fingerprint, "images_sha256": images_sha256(ds), "method": "logits", "precision": "fp32"}
    return scorer.cache.get(key, lambda: {"logits": scorer.logits(scorer.inputs(ds.images))})["logits"]


def msp_rows(scorers, id_ds, sets, cell) -> list[dict]:
    """MSP FPR@95 / AUROC on every image: fp32 logits vs the bf16 every-image pass's logits."""
    z_in = fp32_logits(scorers["fp32"], id_ds)
    b_in = scorers["bf16"].cell_outputs(id_ds, *cell, compute=False)["logits"]
    rows = []
    for key, ds in sets:
        b_out = scorers["bf16"].cell_outputs(ds, *cell, compute=False)
        if b_out is None:
            continue
        f = evaluate(msp_from_logits(z_in), msp_from_logits(fp32_logits(scorers["fp32"], ds)))
        b = evaluate(msp_from_logits(b_in), msp_from_logits(b_out["logits"]))
        rows.append(
            {
                "set": key,
                "n_in": len(id_ds),
                "n_out": len(ds),
                "msp_fpr95_fp32": round(100 * f["fpr_at_95_tpr"], 2),
                "msp_fpr95_bf16": round(100 * b["fpr_at_95_tpr"], 2),
                "msp_auroc_fp32": round(100 * f["auroc"], 2),
                "msp_auroc_bf16": round(100 * b["auroc"], 2),
            }
        )
        print(rows[-1], flush=True)
    return rows


def prefix(scorer: Scorer, ds, cell, chunks: int) -> dict[str, np.ndarray]:
    for start in range(0, min(len(ds), chunks * CELL_CHUNK), CELL_CHUNK):
        scorer.cell_chunk(ds, *cell, start)
    out = scorer.cell_finished(ds, *cell)
    keep = out["rows"] < chunks * CELL_CHUNK
    return {k: v[keep] for k, v in out.items() if k != "rows"}


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    device = common.setup(args)
    if args.gate:
        return gate.run(args, device)
    suite, root, model = common.suite_model(args, device)
    cell = (args.temperature, args.epsilon)
    scorers = {
        p: Scorer(model, (1.0,), (0.0,), ScoreCache(), args.batch_size, progress=False, precision=p)
        for p in ("fp32", "bf16")
    }
    id_spec = suite.id_candidates[-1]
    id_ds = loading.load_spec(id_spec, root, model)
    specs = {s.key: s for s in suite.ood}
    if not args.msp_sets:
        ids = {p: s.cell_outputs(id_ds, *cell) for p, s in scorers.items()}
    if args.msp_sets:
        rows = msp_rows(scorers, id_ds, [(k, loading.load_spec(specs[k], root, model)) for k in args.msp_sets], cell)
        ctx = common.context(device, batch_size=args.batch_size, dtype="fp32 vs bf16", threads=torch.get_num_threads())
        common.write_json(
            args.out,
            f"bench_precision_msp_{args.suite}",
            {"benchmark": "bench_precision", "context": ctx, "rows": rows},
        )
        common.append_results(
            args.results,
            f"bench_precision: {args.suite}, MSP on every image, fp32 vs bf16 logits",
            ctx,
            rows,
            f"ID = {id_spec.label}; bf16 logits from the every-image pass at T=1000, eps=0.0014.",
        )
        return {"rows": rows}
    rows = []
    for key in args.sets:
        ds = loading.load_spec(specs[key], root, model)
        outs = {p: prefix(s, ds, cell, args.chunks) for p, s in scorers.items()}
        row = {"set": key, "n_in": len(id_ds), "n_out": int(outs["fp32"]["scores"].size)}
        for p in ("fp32", "bf16"):
            msp = evaluate(msp_from_logits(ids[p]["logits"]), msp_from_logits(outs[p]["logits"]))
            odin = evaluate(ids[p]["scores"], outs[p]["scores"])
            row |= {
                f"msp_fpr95_{p}": round(100 * msp["fpr_at_95_tpr"], 2),
                f"odin_fpr95_{p}": round(100 * odin["fpr_at_95_tpr"], 2),
                f"odin_auroc_{p}": round(100 * odin["auroc"], 2),
            }
        both = [np.concatenate([ids[p]["scores"], outs[p]["scores"]]) for p in ("fp32", "bf16")]
        logits = [np.concatenate([ids[p]["logits"], outs[p]["logits"]]) for p in ("fp32", "bf16")]
        row["max_abs_score_diff"] = float(np.abs(both[0] - both[1]).max())
        row["score_spread_fp32"] = float(both[0].max() - both[0].min())
        row["argmax_changed"] = float((logits[0].argmax(1) != logits[1].argmax(1)).mean())
        rows.append(row)
        print(row, flush=True)
    ctx = common.context(device, batch_size=args.batch_size, dtype="fp32 vs bf16", threads=torch.get_num_threads())
    common.write_json(
        args.out, f"bench_precision_{args.suite}", {"benchmark": "bench_precision", "context": ctx, "rows": rows}
    )
    common.append_results(
        args.results,
        f"bench_precision: {args.suite}, ODIN T={args.temperature:g} eps={args.epsilon:g}, bf16 autocast vs fp32",
        ctx,
        rows,
        f"ID = {id_spec.label}, all images; OOD = the first {args.chunks} chunks of {CELL_CHUNK} images.",
    )
    return {"rows": rows}


if __name__ == "__main__":
    main()
