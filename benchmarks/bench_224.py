"""ImageNet-sized models on a CPU: MSP and ODIN images/s, and ``Detector.fit`` wall time, for
timm resnet18 and vit_tiny_patch16_224 at 224 px.

Real images: Tiny ImageNet test JPEGs (ID side) and CIFAR-10 test JPEGs (OOD side of fit),
resized to 224 x 224 (PIL bilinear) and normalised with the model's mean and std; the benchmark
is about arithmetic, not preprocessing. Weights are random (timm's initialisation, loaded through
``models.load`` from a temporary file): speed does not depend on their values, quality claims stay
on the paper's models. Each batch is scored by MSP and by ODIN (T = 1000, epsilon = 0.0014) in
alternating order after a warm-up batch, so their ratio is measured under the same load; fit
tunes a reduced grid (4 T x 4 epsilon, shared work across the grid) and its time is also given
per image and against one MSP pass over the same images. Needs a torch build that imports timm:

    /work/tvenv/bin/python benchmarks/bench_224.py --threads 1
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from odin_ood import Detector, models, msp_scores, odin_scores

TINY = "tiny-imagenet/tiny-imagenet-200-test.zip"
CIFAR = "cifar10/cifar10-jpeg-test.zip"
TEMPERATURES = (1.0, 10.0, 100.0, 1000.0)
EPSILONS = (0.0, 0.001, 0.002, 0.004)


def jpegs(zip_path: Path, n: int, model: torch.nn.Module, size: int) -> torch.Tensor:
    """The first n JPEGs of a zip, RGB, resized to size x size, normalised for ``model``."""
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(m for m in z.namelist() if m.lower().endswith((".jpg", ".jpeg")))[:n]
        arrays = [
            np.asarray(Image.open(io.BytesIO(z.read(m))).convert("RGB").resize((size, size), Image.BILINEAR))
            for m in names
        ]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.input_mean, model.input_std))
    return (x - mean) / std


def measure(name: str, args, data_root: Path, tmp: Path) -> dict:
    import timm

    ref = timm.create_model(name, pretrained=False)
    models.save_safetensors(ref, tmp / f"{name}.safetensors")
    model = models.load(f"timm:{name}", weights=tmp / f"{name}.safetensors")
    size = model.input_shape[-1]
    x = jpegs(data_root / TINY, args.batch_size * (args.batches + 1), model, size)
    std = model.input_std
    times = {"msp": 0.0, "odin": 0.0}
    batches = x.split(args.batch_size)
    for k, batch in enumerate(batches):
        order = ("msp", "odin") if k % 2 else ("odin", "msp")
        for method in order:
            fn = (
                (lambda b=batch: msp_scores(model, b, normalise=False))
                if method == "msp"
                else (lambda b=batch: odin_scores(model, b, 1000.0, 0.0014, std, normalise=False))
            )
            _, seconds = common.timed(fn, torch.device("cpu"))
            if k > 0:  # batch 0 warms up
                times[method] += seconds
    n = args.batch_size * args.batches
    x_id, x_ood = x[: args.fit_images], jpegs(data_root / CIFAR, args.fit_images, model, size)
    detector = Detector(
        model, temperatures=TEMPERATURES, epsilons=EPSILONS, batch_size=args.batch_size, normalise=False
    )  # jpegs() normalised the images
    _, msp_pass = common.timed(
        lambda: [msp_scores(model, b, normalise=False) for b in torch.cat([x_id, x_ood]).split(args.batch_size)],
        torch.device("cpu"),
    )
    _, fit_s = common.timed(lambda: detector.fit(x_id, x_ood), torch.device("cpu"))
    fit_n = 2 * args.fit_images
    return {
        "model": f"timm:{name}",
        "input": f"{size}x{size}",
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "msp_img_s": n / times["msp"],
        "odin_img_s": n / times["odin"],
        "odin_over_msp": times["msp"] / times["odin"],
        "fit_images": fit_n,
        "fit_grid": f"{len(TEMPERATURES)}x{len(EPSILONS)}",
        "fit_s": fit_s,
        "fit_s_per_image": fit_s / fit_n,
        "fit_over_msp_pass": fit_s / msp_pass,
    }


def main() -> None:
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "vit_tiny_patch16_224"])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=4, help="timed batches per method (after one warm-up batch)")
    p.add_argument("--fit-images", type=int, default=32, help="images per side for fit")
    p.add_argument("--data-root", type=Path, default=common.DEFAULT_DATA_ROOT)
    args = p.parse_args()
    device = common.setup(args)
    if args.tiny:
        args.batch_size, args.batches, args.fit_images = 2, 1, 4
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows.append(measure(name, args, args.data_root, Path(tmp)))
            print(rows[-1], flush=True)
    ctx = common.context(device, batch_size=args.batch_size, dtype="fp32", load_average=round(os.getloadavg()[0], 1))
    common.write_json(args.out, "bench_224", {"context": ctx, "rows": rows})
    common.append_results(
        args.results,
        "bench_224: timm resnet18 and vit_tiny_patch16_224 at 224 px, MSP vs ODIN, fit",
        ctx,
        rows,
        note=f"Real images (Tiny ImageNet test JPEGs; CIFAR-10 test JPEGs as fit's OOD side) resized to 224 px, "
        f"random weights. {args.batches} timed batches of {args.batch_size} per method, interleaved, after a "
        f"warm-up; ODIN at T = 1000, epsilon = 0.0014 (3 passes: forward, input-only backward, forward). "
        f"fit: Detector.fit on {args.fit_images} + {args.fit_images} images over a {len(TEMPERATURES)} x "
        f"{len(EPSILONS)} grid; fit_over_msp_pass = fit time / one MSP pass over the same images. "
        f"Load average {ctx['load_average']} (a shared 2-core machine: absolute images/s are low and noisy, "
        "the ratios are measured under the same load).",
    )


if __name__ == "__main__":
    main()
