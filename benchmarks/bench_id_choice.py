"""Which CIFAR-10 test set as ID: lossless images vs their JPEG re-encodings, at the paper's (T, eps).

The paper's ID set is the full lossless CIFAR-10 test set; here there are the first 1,000 test
images lossless and all 10,000 as JPEG (quality ~75). Scored with the suite's one-cell passes
(``Scorer.cell_outputs``, cached): (a) the 1,000 lossless images, (b) the JPEG copies of the SAME
1,000 images (paired: JPEG files are ordered by class, then official order, so class c's first
n_c JPEGs are the lossless set's class-c images; the mean pixel difference is recorded), and
(c) with ``--full-jpeg`` all 10,000 JPEG images. Every ID variant is evaluated against the same
OOD images (every chunk the suite's every-image pass has finished), so the differences are the
ID set's alone.

    python benchmarks/bench_id_choice.py --precision bf16
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from odin_ood import data
from odin_ood.experiments import loading
from odin_ood.experiments.cache import ScoreCache
from odin_ood.experiments.every_image import msp_from_logits
from odin_ood.experiments.scorer import Scorer
from odin_ood.metrics import evaluate


def parser():
    p = common.suite_parser(__doc__.splitlines()[0], "cifar10-densenet", batch_size=64)
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--full-jpeg", action="store_true", help="also score all 10,000 JPEG test images")
    return p


def paired_jpeg(lossless, jpeg) -> tuple[data.ImageDataset, float]:
    """The JPEG copies of the lossless images (same order) and their mean |pixel difference| (/255)."""
    lab_j = jpeg.labels.numpy()
    idx = np.empty(len(lossless), dtype=np.int64)
    for c in np.unique(lossless.labels.numpy()):
        mine = np.flatnonzero(lossless.labels.numpy() == c)
        idx[mine] = np.flatnonzero(lab_j == c)[: mine.size]
    sub = jpeg.subset(torch.from_numpy(idx), name="cifar10-jpeg-paired")
    diff = float((sub.images.float() - lossless.images.float()).abs().mean() / 255)
    return sub, diff


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    device = common.setup(args)
    suite, root, model = common.suite_model(args, device)
    scorer = Scorer(model, (1.0,), (0.0,), ScoreCache(), args.batch_size, progress=False, precision=args.precision)
    lossless = data.load("cifar10-lossless-1000", root=root)
    jpeg = data.load("cifar10-jpeg", root=root)
    paired, diff = paired_jpeg(lossless, jpeg)
    ids = {"lossless 1,000": lossless, "JPEG, same 1,000": paired}
    if args.full_jpeg:
        ids["JPEG 10,000"] = jpeg
    cell = (1000.0, 0.0014)
    id_out = {k: scorer.cell_outputs(ds, *cell) for k, ds in ids.items()}
    acc = {k: float((o["logits"].argmax(1) == ids[k].labels.numpy()).mean()) for k, o in id_out.items()}
    rows = []
    for spec in suite.ood:
        try:
            ds = loading.load_spec(spec, root, model)
        except (FileNotFoundError, ValueError, KeyError):
            continue
        out = scorer.cell_finished(ds, *cell)
        if out is None:
            continue
        for k, o in id_out.items():
            msp = evaluate(msp_from_logits(o["logits"]), msp_from_logits(out["logits"]))
            odin = evaluate(o["scores"], out["scores"])
            rows.append(
                {
                    "ood": spec.key,
                    "n_out": int(out["scores"].size),
                    "id": k,
                    "id_accuracy": round(100 * acc[k], 1),
                    **{f"msp_{m}": round(100 * msp[m], 2) for m in ("fpr_at_95_tpr", "auroc")},
                    **{f"odin_{m}": round(100 * odin[m], 2) for m in ("fpr_at_95_tpr", "detection_error", "auroc")},
                }
            )
            print(rows[-1], flush=True)
    ctx = common.context(device, batch_size=args.batch_size, dtype=args.precision, threads=torch.get_num_threads())
    note = (
        "T = 1000, eps = 0.0014; the paired JPEG images differ "
        f"from the lossless ones by {255 * diff:.2f}/255 per pixel "
        "on average. OOD rows: the images the suite's every-image pass had finished (n_out)."
    )
    common.write_json(
        args.out,
        "bench_id_choice",
        {"benchmark": "bench_id_choice", "context": ctx, "rows": rows, "pixel_diff": diff, "accuracy": acc},
    )
    common.append_results(
        args.results, f"bench_id_choice: {args.suite}, lossless vs JPEG CIFAR-10 as ID", ctx, rows, note
    )
    return {"rows": rows}


if __name__ == "__main__":
    main()
