import re

import numpy as np
import pytest
import torch

from odin_ood.data.cache import cache_key, cached, load_dataset, save_dataset
from odin_ood.data.dataset import ImageDataset


def _ds(seed=0):
    x = np.random.default_rng(seed).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    return ImageDataset(
        x,
        [0, 1, 2, 3, -1],
        name="toy",
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        manifest={"seed": seed, "sources": [{"path": "p", "sha256": "ab"}]},
        classes=("a", "b", "c", "d"),
    )


@pytest.mark.parametrize("compress", [False, True])
def test_roundtrip_keeps_everything(tmp_path, compress):
    ds = _ds()
    save_dataset(ds, tmp_path / "e.npz", compress)
    back = load_dataset(tmp_path / "e.npz")
    assert torch.equal(back.images, ds.images) and torch.equal(back.labels, ds.labels)
    assert (back.name, back.mean, back.std, back.classes) == (ds.name, ds.mean, ds.std, ds.classes)
    assert back.manifest == ds.manifest


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(f, **arrays):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        save_dataset(_ds(), tmp_path / "e.npz")
    assert list(tmp_path.iterdir()) == []


def test_cached_builds_once_and_rebuilds_damaged_entry(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return _ds()

    a = cached("toy", {"seed": 0}, build, cache_dir=tmp_path)
    b = cached("toy", {"seed": 0}, build, cache_dir=tmp_path)
    assert len(calls) == 1 and torch.equal(a.images, b.images)
    entry = tmp_path / f"{cache_key('toy', {'seed': 0})}.npz"
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning, match="damaged"):
        c = cached("toy", {"seed": 0}, build, cache_dir=tmp_path)
    assert len(calls) == 2 and torch.equal(c.images, a.images)
    assert cache_key("toy", {"seed": 0}) != cache_key("toy", {"seed": 1})


def test_damaged_entry_is_a_clear_error(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 nope")
    with pytest.raises(ValueError, match=re.escape("bad.npz: unreadable dataset cache entry")):
        load_dataset(tmp_path / "bad.npz")


def test_dataset_contract():
    ds = _ds()
    x, y = ds[4]
    assert x.dtype == torch.float32 and x.shape == (3, 4, 4) and y == -1
    assert torch.allclose(x * 255, ds.images[4].float())
    sub = ds.subset([1, 3])
    assert sub.labels.tolist() == [1, 3] and sub.manifest["parent"] == "toy"
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(np.zeros((2, 3, 4, 4), np.float32), name="x", mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(ValueError, match="one per channel"):
        ImageDataset(np.zeros((2, 3, 4, 4), np.uint8), name="x", mean=(0,), std=(1,))
