"""CIFAR-10 and CIFAR-100: the official python pickle batches, and the image-zip copies.

Official python versions (https://www.cs.toronto.edu/~kriz/cifar.html), unpickled with
``encoding="bytes"`` as the site instructs:

- CIFAR-10 ``cifar-10-batches-py/``: ``data_batch_1..5`` (train), ``test_batch`` (test), each a
  dict with ``data`` (10000, 3072) uint8 rows = R plane, G plane, B plane of a 32x32 image,
  ``labels`` (list of int); ``batches.meta`` has ``label_names``.
- CIFAR-100 ``cifar-100-python/``: ``train``, ``test`` with ``data``, ``fine_labels``,
  ``coarse_labels``; ``meta`` has ``fine_label_names`` and ``coarse_label_names``.

These are pickles, so they are read with :class:`PlainDataUnpickler`, which resolves only the
globals that a pickled numpy array needs; anything else (code, arbitrary classes) is refused.
"""

from __future__ import annotations

import codecs
import importlib
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from odin_ood.data.dataset import (
    CIFAR_MEAN,
    CIFAR_STD,
    MNIST_MEAN,
    MNIST_STD,
    ImageDataset,
    find_file,
    resolve_root,
    source_record,
)
from odin_ood.data.folders import load_class_folders

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _reconstruct() -> Any:
    try:
        return importlib.import_module("numpy._core.multiarray")._reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module("numpy.core.multiarray")._reconstruct


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,  # how python 3 pickles bytes at protocol < 3
}


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickler for plain data: dicts, lists, str/bytes, numbers and numpy arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]()
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: only plain data and numpy arrays are allowed"
        )


def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def read_cifar_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """One official CIFAR pickle as a dict with str keys (values as stored)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = PlainDataUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
        raise ValueError(f"{path}: not a plain-data CIFAR pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict, found {type(obj).__name__}")
    return {_text(k): v for k, v in obj.items()}


def _batch_arrays(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(path)
    if "data" not in batch or label_key not in batch:
        raise ValueError(f"{path}: missing 'data' or '{label_key}' (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ValueError(
            f"{path}: expected uint8 data (N, 3072) and N labels; got {data.dtype} {data.shape}, {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _from_batches(files: list[Path], label_key: str, names: list[str], name: str) -> ImageDataset:
    parts = [_batch_arrays(f, label_key) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise ValueError(f"{files[0].parent}: labels outside 0..{len(names) - 1}")
    manifest = {"sources": [source_record(f) for f in files], "format": "cifar-python-pickle", "label": label_key}
    return ImageDataset(images, labels, name=name, mean=CIFAR_MEAN, std=CIFAR_STD, manifest=manifest, classes=names)


def load_cifar10_pickles(folder: str | os.PathLike, split: str = "test") -> ImageDataset:
    """CIFAR-10 from ``folder`` = ``cifar-10-batches-py`` (50,000 train / 10,000 test)."""
    folder = Path(folder)
    stems = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    if split not in stems:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    files = [find_file(folder, [s], "CIFAR-10 batch") for s in stems[split]]
    meta = read_cifar_pickle(find_file(folder, ["batches.meta"], "CIFAR-10 metadata"))
    names = [_text(n) for n in meta.get("label_names", CIFAR10_CLASSES)]
    return _from_batches(files, "labels", names, "cifar10")


def load_cifar100_pickles(folder: str | os.PathLike, split: str = "test", label: str = "fine") -> ImageDataset:
    """CIFAR-100 from ``folder`` = ``cifar-100-python``; ``label`` is "fine" (100) or "coarse" (20)."""
    folder = Path(folder)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if label not in ("fine", "coarse"):
        raise ValueError(f"label must be 'fine' or 'coarse'; got {label!r}")
    meta = read_cifar_pickle(find_file(folder, ["meta"], "CIFAR-100 metadata"))
    key = f"{label}_label_names"
    if key not in meta:
        raise ValueError(f"{folder / 'meta'}: missing {key!r}")
    names = [_text(n) for n in meta[key]]
    return _from_batches([find_file(folder, [split], "CIFAR-100 split")], f"{label}_labels", names, "cifar100")


def load_cifar10(root: str | os.PathLike | None = None, split: str = "test") -> ImageDataset:
    """CIFAR-10 from the official pickles in ``root/cifar10/cifar-10-batches-py/``."""
    return load_cifar10_pickles(resolve_root(root) / "cifar10" / "cifar-10-batches-py", split)


def load_cifar100(root: str | os.PathLike | None = None, split: str = "test", label: str = "fine") -> ImageDataset:
    """CIFAR-100 from the official pickles in ``root/cifar100/cifar-100-python/``."""
    return load_cifar100_pickles(resolve_root(root) / "cifar100" / "cifar-100-python", split, label)


def _zip_or_folder(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.zip", folder / stem):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"expected {folder / (stem + '.zip')} (or the extracted folder {folder / stem}) "
        f"laid out as <split>/<class>/<image>"
    )


def load_cifar10_jpeg(root: str | os.PathLike | None = None, split: str = "test", **kw: Any) -> ImageDataset:
    """CIFAR-10 re-encoded as JPEG (quality ~75): ``root/cifar10/cifar10-jpeg-{train,test}.zip``
    (50,000 / 10,000 images, ordered by class then official order). A *different* input
    distribution from the lossless images; keyword arguments go to ``load_class_folders``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    path = _zip_or_folder(resolve_root(root) / "cifar10", f"cifar10-jpeg-{split}")
    return load_class_folders(
        path, split, name="cifar10-jpeg", mean=CIFAR_MEAN, std=CIFAR_STD, classes=CIFAR10_CLASSES, **kw
    )


def load_cifar10_lossless_1000(root: str | os.PathLike | None = None, split: str = "test", **kw: Any) -> ImageDataset:
    """The first 1,000 CIFAR-10 test images, lossless, in official order:
    ``root/cifar10/cifar10-test-lossless-first1000.zip``."""
    if split != "test":
        raise ValueError(f"cifar10-lossless-1000 has only split 'test'; got {split!r}")
    path = _zip_or_folder(resolve_root(root) / "cifar10", "cifar10-test-lossless-first1000")
    return load_class_folders(
        path, split, name="cifar10-lossless-1000", mean=CIFAR_MEAN, std=CIFAR_STD, classes=CIFAR10_CLASSES, **kw
    )


def load_cifar10bw(
    root: str | os.PathLike | None = None,
    split: str = "test",
    *,
    source: str = "cifar10-jpeg",
    size: int = 28,
    method: str = "box",
    **kw: Any,
) -> ImageDataset:
    """CIFAR-10bw (Appendix A.1): CIFAR-10 ``split`` images converted to greyscale (ITU-R 601-2
    luma, as PIL's "L") and downsampled to ``size`` x ``size`` with ``method`` for MNIST models.

    ``source`` names the CIFAR-10 copy: ``"cifar10-jpeg"`` (default: the full 10,000 test images
    available here; JPEG artefacts are immaterial next to the MNIST/CIFAR gap), ``"cifar10"``
    (official pickles) or ``"cifar10-lossless-1000"``. Unlabelled, like every OOD set.
    """
    from odin_ood.data.build import check_method, resize_images, to_grey
    from odin_ood.data.registry import load

    if source not in ("cifar10", "cifar10-jpeg", "cifar10-lossless-1000"):
        raise ValueError(f"source must be a CIFAR-10 dataset name; got {source!r}")
    check_method(method)
    colour = load(source, root=root, split=split, **kw)
    grey = resize_images(to_grey(colour.images.permute(0, 2, 3, 1).numpy()), size, method)
    manifest = {
        "sources": colour.manifest.get("sources", []),
        "source_dataset": source,
        "split": split,
        "convert": f"luma (PIL 'L'), resize {size}x{size} ({method})",
        "method": method,
    }
    return ImageDataset(grey.transpose(0, 3, 1, 2), name="cifar10bw", mean=MNIST_MEAN, std=MNIST_STD, manifest=manifest)
