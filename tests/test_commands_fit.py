"""``odin-ood fit`` on real MNIST / notMNIST with the shipped MNIST model: the command reproduces
the Python ``Detector.fit`` exactly, its record and report tell the truth, splits never share an
image (by content); what a careless operator passes: test_commands_fit_inputs.py."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from odin_ood import Detector, data, models, msp_scores, odin_scores
from odin_ood.cli import main
from odin_ood.metrics import METRICS, evaluate
from serving_support import write_pngs

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def fit(out, *args):
    return main(["fit", "--out", str(out), "--threads", "1", "--workers", "1", *map(str, args)])


def pixels(images: torch.Tensor, sources: list[str]) -> torch.Tensor:
    """Images named ``dataset:test/i`` in a fit record, from the dataset itself, in [0, 1]."""
    return images[[int(s.rsplit("/", 1)[1]) for s in sources]].float() / 255


@pytest.fixture(scope="module")
def datasets(shared_data):
    return data.load("mnist", root=shared_data), data.load("notmnist", root=shared_data)


@pytest.fixture(scope="module")
def mnist_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "det"
    assert (
        fit(
            out,
            "--model",
            "mnist-mlp",
            "--id",
            "mnist",
            "--ood",
            "notmnist",
            "--data-root",
            shared_data,
            "--limit",
            600,
            "--holdout",
            0.5,
        )
        == 0
    )
    return out, json.loads((out / "fit.json").read_text())


def test_cli_fit_reproduces_python_detector_fit_exactly(mnist_run, datasets):
    out, record = mnist_run
    mnist, notmnist = datasets
    x_id = pixels(mnist.images, record["tuning"]["id"]["sources"])
    x_ood = pixels(notmnist.images, record["tuning"]["ood"]["sources"])
    assert len(x_id) == len(x_ood) == 300
    model = models.load("mnist-mlp")
    det = Detector(model, input_std=model.input_std).fit(x_id, x_ood)
    saved = json.loads((out / "detector.json").read_text())
    assert (saved["temperature"], saved["epsilon"], saved["threshold"]) == (
        det.temperature_,
        det.epsilon_,
        det.threshold_,
    )
    assert saved["model_fingerprint"] == det.model_fingerprint_ and saved["input_shape"] == [1, 28, 28]
    assert saved["model"] == "mnist-mlp" and "weights" not in saved  # how the model was loaded, named on a mismatch
    for m in METRICS:
        # cells the (default, shared) search did not score are null in fit.json, NaN in the result
        assert np.array_equal(np.array(record["grid"][m], dtype=float), det.tuning_.metrics[m], equal_nan=True)
    assert record["grid"]["chosen"] == list(det.tuning_.index)
    assert (record["search"], record["passes_per_image"]) == ("shared", det.tuning_.passes_per_image)
    loaded = Detector.load(out, model)  # what score and serve will use
    assert loaded.threshold_ == det.threshold_ and loaded.input_shape == (1, 28, 28)


def test_held_out_metrics_are_those_of_the_unseen_images(mnist_run, datasets):
    out, record = mnist_run
    mnist, notmnist = datasets
    held = record["heldout"]
    x_in, x_out = pixels(mnist.images, held["id"]["sources"]), pixels(notmnist.images, held["ood"]["sources"])
    assert len(x_in) == len(x_out) == 300
    model = models.load("mnist-mlp")
    det = Detector.load(out, model)
    s_in, s_out = det.score(x_in).numpy(), det.score(x_out).numpy()
    labels = np.r_[np.ones(300), np.zeros(300)]
    assert held["odin"]["auroc"] == pytest.approx(roc_auc_score(labels, np.r_[s_in, s_out]), abs=1e-12)
    msp = torch.cat([msp_scores(model, x_in), msp_scores(model, x_out)]).numpy()
    assert held["msp"]["auroc"] == pytest.approx(roc_auc_score(labels, msp), abs=1e-12)
    assert held["odin"] == evaluate(s_in, s_out)
    assert held["id_kept"] == pytest.approx(np.mean(s_in > det.threshold_))
    assert held["ood_flagged"] == pytest.approx(np.mean(s_out <= det.threshold_))
    # no image (by content) both tunes and evaluates
    for images, side in ((mnist.images, "id"), (notmnist.images, "ood")):
        tuned = {
            hashlib.sha256(x.numpy().tobytes()).digest() for x in pixels(images, record["tuning"][side]["sources"])
        }
        kept = {hashlib.sha256(x.numpy().tobytes()).digest() for x in pixels(images, held[side]["sources"])}
        assert len(tuned) == 300 and len(kept) == 300 and not tuned & kept


def test_fit_report_files_show_the_grid_the_choice_and_the_metrics(mnist_run):
    out, record = mnist_run
    with Image.open(out / "fit_report.png") as im:
        assert im.format == "PNG" and im.size == (1260, 450)
    page = (out / "fit_report.html").read_text()
    grid = np.array(record["grid"]["fpr_at_95_tpr"], dtype=float)  # null: a cell the shared search did not score
    i, j = np.unravel_index(np.nanargmin(grid), grid.shape)  # first minimum in grid order, as tuning picks
    assert [int(i), int(j)] == record["grid"]["chosen"]
    assert (
        record["temperature"] == record["grid"]["temperatures"][i]
        and record["epsilon"] == record["grid"]["epsilons"][j]
    )
    cells = re.findall(r"<td( class=chosen)?>([\d.]*)</td>", page.split("Tuning grid")[1])
    assert len(cells) == grid.size and [k for k, (c, _) in enumerate(cells) if c] == [i * grid.shape[1] + j]
    assert [float(v) if v else None for _, v in cells] == [
        None if np.isnan(v) else round(100 * v, 1) for v in grid.flatten()
    ]
    for method in ("odin", "msp"):
        for m in METRICS:
            value = re.search(rf'data-key="{method}\|{m}">([\d.]+)<', page).group(1)
            assert float(value) == round(100 * record["heldout"][method][m], 2)
    assert f"T = {record['temperature']:g}" in page and f"{record['threshold']:.9g}" in page
    assert "<script" not in page and not re.search(r'(src|href)="(?!data:)', page)  # self-contained


def test_fit_report_picture_reads_well_and_its_page_fits_1400_px(mnist_run, datasets, tmp_path):
    """The report's figure, drawn from fit.json and the held-out scores, has few readable ticks, a
    labelled threshold, outlined histograms and an unclipped title (tests/figure_support.py); its
    page, with the paper's 10 x 21 grid as a table, is no wider than a 1400-px window."""
    import matplotlib.pyplot as plt

    from figure_support import faults, rendered_widths
    from odin_ood.report.fit_report import fit_figure
    from odin_ood.report.style import finish

    out, record = mnist_run
    mnist, notmnist = datasets
    det = Detector.load(out, models.load("mnist-mlp"))
    held = record["heldout"]
    scores = {
        "id": det.score(pixels(mnist.images, held["id"]["sources"])).numpy(),
        "ood": det.score(pixels(notmnist.images, held["ood"]["sources"])).numpy(),
    }
    fig = finish(fit_figure(record, scores))
    assert faults(fig) == []
    heatmap = fig.axes[0]
    assert len(heatmap.get_xticklabels()) <= 6 and len(record["grid"]["epsilons"]) == 21
    plt.close(fig)
    assert len(record["grid"]["temperatures"]) == 10
    width = rendered_widths(out / "fit_report.html", tmp_path)
    assert width["page"] <= 1400 and max(width["tables"]) <= width["body"], width


@pytest.mark.parametrize("ood_free", [None, "id-only"])
def test_fit_without_ood_inputs_tunes_like_detector_fit(datasets, tmp_path, ood_free, capsys):
    """No --ood: the default (noise) or --ood-free id-only, each equal to Detector.fit; the output
    and fit.json say what noise stood in for OOD data (how many images, of which kind and size)."""
    mnist, _ = datasets
    digits = mnist.images[5000:5120, 0].numpy()
    folder = write_pngs(tmp_path / "digits", digits)
    out = tmp_path / "det"
    flags = [] if ood_free is None else ["--ood-free", ood_free]
    assert (
        fit(
            out,
            "--model",
            "mnist-mlp",
            "--id",
            folder,
            "--holdout",
            0,
            "--quiet",
            "--temperatures",
            "1,10,1000",
            "--epsilons",
            "0,0.001,0.002",
            *flags,
        )
        == 0
    )
    record = json.loads((out / "fit.json").read_text())
    expected = "ID images only" if ood_free == "id-only" else "noise"
    assert expected in record["tuning"]["ood"]["what"] and record["heldout"] is None
    assert record["tuning_source"] == (ood_free or "noise")
    order = [int(s.rsplit("/", 1)[1][:3]) for s in record["tuning"]["id"]["sources"]]
    x = torch.from_numpy(digits[order]).float().div(255)[:, None]
    model = models.load("mnist-mlp")
    det = Detector(
        model,
        input_std=model.input_std,
        input_mean=model.input_mean,
        temperatures=(1, 10, 1000),
        epsilons=(0, 0.001, 0.002),
        **({} if ood_free is None else {"ood_free": ood_free}),
    ).fit(x)
    saved = json.loads((out / "detector.json").read_text())
    assert (saved["temperature"], saved["epsilon"], saved["threshold"]) == (
        det.temperature_,
        det.epsilon_,
        det.threshold_,
    )
    assert record["tuning"]["ood"]["count"] == det.tuning_.scores_out.shape[-1]
    if ood_free is None:  # Detector.fit's noise: 1000 images of each kind
        noise = (
            "1000 Gaussian (each pixel N(0.5, 1) clipped to [0, 1]) + 1000 Uniform (U[0, 1)) noise images of "
            "1x28x28, seeds 0 and 1"
        )
        assert record["tuning"]["ood"]["what"] == noise and det.tuning_.scores_out.shape[-1] == 2000
        assert f"no --ood given: tuned against {noise}" in capsys.readouterr().out
    assert (out / "fit_report.png").stat().st_size > 0 and "None (<code>--holdout 0</code>)" in (
        out / "fit_report.html"
    ).read_text()


def test_duplicate_images_are_dropped_so_no_picture_sits_in_both_splits(datasets, tmp_path):
    mnist, notmnist = datasets
    digits = mnist.images[6000:6030, 0].numpy()
    # 30 digits, and the first 10 again under other names (as a second PNG encoding and a BMP)
    folder = write_pngs(tmp_path / "digits", digits)
    for k in range(10):
        Image.fromarray(digits[k]).save(folder / f"copy_{k}.bmp")
    letters = write_pngs(tmp_path / "letters", notmnist.images[:20, 0].numpy())
    out = tmp_path / "det"
    assert (
        fit(
            out,
            "--model",
            "mnist-mlp",
            "--id",
            folder,
            "--ood",
            letters,
            "--holdout",
            0.5,
            "--quiet",
            "--temperatures",
            "1,1000",
            "--epsilons",
            "0,0.002",
        )
        == 0
    )
    record = json.loads((out / "fit.json").read_text())
    assert record["duplicates"] == {"id": 10, "ood": 0}

    def contents(sources):
        return {np.asarray(Image.open(s).convert("L")).tobytes() for s in sources}

    tuned, held = record["tuning"]["id"]["sources"], record["heldout"]["id"]["sources"]
    assert len(tuned) + len(held) == 30
    assert len(contents(tuned)) == len(tuned) and not contents(tuned) & contents(held)


def test_detector_file_round_trips_input_shape_and_older_files_still_load(mnist_run, tmp_path):
    out, _ = mnist_run
    model = models.load("mnist-mlp")
    saved = json.loads((out / "detector.json").read_text())
    assert Detector.load(out, model).to_dict() == saved
    del saved["input_shape"]  # a detector written before input_shape was recorded
    (tmp_path / "old.json").write_text(json.dumps(saved))
    old = Detector.load(tmp_path / "old.json", model)
    assert old.input_shape is None and old.threshold_ == saved["threshold"]


def test_fit_with_another_score_matches_detector_fit_with_that_score(datasets, tmp_path):
    mnist, notmnist = datasets
    id_folder = write_pngs(tmp_path / "digits", mnist.images[6000:6080, 0].numpy())
    ood_folder = write_pngs(tmp_path / "letters", notmnist.images[6000:6080, 0].numpy())
    out = tmp_path / "det"
    assert (
        fit(
            out,
            "--model",
            "mnist-mlp",
            "--id",
            id_folder,
            "--ood",
            ood_folder,
            "--holdout",
            0,
            "--quiet",
            "--score",
            "energy-odin",
            "--epsilons",
            "0,0.001,0.002",
        )
        == 0
    )
    record = json.loads((out / "fit.json").read_text())
    saved = json.loads((out / "detector.json").read_text())
    assert saved["score"] == record["score"] == "energy-odin"
    order = {k: [int(s.rsplit("/", 1)[1][:3]) for s in record["tuning"][k]["sources"]] for k in ("id", "ood")}
    x_id = torch.from_numpy(mnist.images[6000:6080, 0].numpy()[order["id"]]).float().div(255)[:, None]
    x_ood = torch.from_numpy(notmnist.images[6000:6080, 0].numpy()[order["ood"]]).float().div(255)[:, None]
    model = models.load("mnist-mlp")
    det = Detector(model, input_std=model.input_std, epsilons=(0, 0.001, 0.002), score_family="energy-odin").fit(
        x_id, x_ood
    )
    assert (saved["temperature"], saved["epsilon"], saved["threshold"]) == (
        det.temperature_,
        det.epsilon_,
        det.threshold_,
    )
    assert saved["temperature"] == 1.0 and "Energy + perturbation" in (out / "fit_report.html").read_text()


def test_fit_id_only_chooses_the_highest_mean_id_score_and_its_report_says_so(datasets, tmp_path):
    mnist, _ = datasets
    digits = mnist.images[7000:7080, 0].numpy()
    folder = write_pngs(tmp_path / "digits", digits)
    eps = (0.3, 0.16, 0.08, 0.02, 0.004, 0.0)  # this MLP's mean score rises with epsilon: high to low
    out = tmp_path / "det"
    assert (
        fit(
            out,
            "--model",
            "mnist-mlp",
            "--id",
            folder,
            "--holdout",
            0.5,
            "--quiet",
            "--ood-free",
            "id-only",
            "--epsilons",
            ",".join(map(str, eps)),
        )
        == 0
    )
    record = json.loads((out / "fit.json").read_text())
    assert record["tuning_source"] == "id-only" and record["objective"] == "mean_id_score"
    assert record["tuning"]["ood"]["count"] == 0 and "Generalized-ODIN" in record["tuning"]["ood"]["what"]
    grid = record["grid"]
    assert grid["temperatures"] == [1000.0] and "fpr_at_95_tpr" not in grid
    # the same Python fit on the same tuning images, and the mean score it maximises, recomputed
    order = [int(s.rsplit("/", 1)[1][:3]) for s in record["tuning"]["id"]["sources"]]
    x = torch.from_numpy(digits[order]).float().div(255)[:, None]
    model = models.load("mnist-mlp")
    det = Detector(model, input_std=model.input_std, epsilons=eps, ood_free="id-only").fit(x)
    saved = json.loads((out / "detector.json").read_text())
    assert (saved["temperature"], saved["epsilon"], saved["threshold"]) == (1000.0, det.epsilon_, det.threshold_)
    means = [odin_scores(model, x, 1000.0, e, input_std=model.input_std).double().mean().item() for e in eps]
    assert grid["chosen"] == [0, int(np.argmax(means))] and saved["epsilon"] == eps[int(np.argmax(means))]
    assert grid["mean_id_score"][0] == pytest.approx(means, rel=1e-6)
    # held-out: 40 unseen digits against fresh noise, as without --ood-free
    held = record["heldout"]
    assert held["id"]["count"] == 40 and held["ood"]["what"] == (
        "40 fresh Gaussian (each pixel N(0.5, 1) clipped to [0, 1]) + 40 Uniform (U[0, 1)) noise images of 1x28x28, "
        "seeds 1000 and 1001"
    )
    page = (out / "fit_report.html").read_text()
    assert "ID images alone" in page and "lowest FPR" not in page and "Tuning grid: mean ID score" in page
    cells = re.findall(r"<td( class=chosen)?>([-\d.e]+)</td>", page.split("Tuning grid")[1])
    assert [float(v) for _, v in cells] == pytest.approx(means, rel=1e-6)
    assert [k for k, (c, _) in enumerate(cells) if c] == [int(np.argmax(means))]
    with Image.open(out / "fit_report.png") as im:
        assert im.format == "PNG" and im.size == (1260, 450)
    # without a held-out split there are no OOD scores to draw: the report still renders
    assert (
        fit(
            tmp_path / "all",
            "--model",
            "mnist-mlp",
            "--id",
            folder,
            "--holdout",
            0,
            "--quiet",
            "--ood-free",
            "id-only",
            "--epsilons",
            "0,0.002",
        )
        == 0
    )
    assert "None (<code>--holdout 0</code>)" in (tmp_path / "all" / "fit_report.html").read_text()
