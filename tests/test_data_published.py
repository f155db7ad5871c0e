"""The paper's published OOD folders and LSUN builders, on fixtures in their exact layouts."""

import numpy as np
import pytest

from fixtures.formats import encode_image, write_zip
from odin_ood.data import CIFAR_STD, load
from odin_ood.data.published import PUBLISHED_FOLDERS

NAMES = {
    "tinyimagenet-crop": ".jpg",
    "tinyimagenet-resize": ".jpg",
    "lsun-crop": ".jpg",
    "lsun-resize": ".jpg",
    "isun": ".jpeg",
}


def _colour(i):
    return np.full((32, 32, 3), (20 * i % 256, 255 - 20 * i % 256, 100), np.uint8)


@pytest.fixture
def published_root(tmp_path):
    for name, suffix in NAMES.items():
        folder = tmp_path / PUBLISHED_FOLDERS[name]
        folder.mkdir(parents=True)
        for i in (0, 1, 2, 10):  # natural order must put 10 last
            (folder / f"{i}{suffix}").write_bytes(encode_image(_colour(i), "JPEG"))
    return tmp_path


@pytest.mark.parametrize("name", list(NAMES))
def test_published_folder_loads_in_natural_order(published_root, name):
    kw = {"published": True} if name.startswith("tinyimagenet") else {}
    ds = load(name, root=published_root, **kw)
    assert ds.images.shape == (4, 3, 32, 32) and (ds.labels == -1).all() and ds.std == CIFAR_STD
    means = ds.images.float().mean(dim=(2, 3)).numpy()
    expected = np.array([_colour(i)[0, 0] for i in (0, 1, 2, 10)], np.float64)
    np.testing.assert_allclose(means, expected, atol=3)  # JPEG of flat colours is near exact
    assert PUBLISHED_FOLDERS[name] in ds.manifest["format"]


def test_published_folder_missing_names_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"iSUN/iSUN_patches"):
        load("isun", root=tmp_path)


def test_published_corrupt_image_names_file(published_root):
    (published_root / "LSUN/test/2.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match=r"2\.jpg: cannot decode"):
        load("lsun-crop", root=published_root)


def test_lsun_built_from_raw_images_of_any_size(tmp_path):
    rng = np.random.default_rng(0)
    raw = {f"scene_{i}.png": rng.integers(0, 256, (40 + 3 * i, 60, 3), dtype=np.uint8) for i in range(4)}
    write_zip(tmp_path / "lsun_test.zip", {k: encode_image(v, "PNG") for k, v in raw.items()})
    crop = load("lsun-crop", source=tmp_path / "lsun_test.zip", seed=2)
    resize = load("lsun-resize", source=tmp_path / "lsun_test.zip", method="box")
    assert crop.images.shape == resize.images.shape == (4, 3, 32, 32)
    assert crop.manifest["seed"] == 2 and resize.manifest["method"] == "box"
    patch = crop.images[3].permute(1, 2, 0).numpy()
    windows = np.lib.stride_tricks.sliding_window_view(raw["scene_3.png"], patch.shape)
    assert (windows == patch).all(axis=(-3, -2, -1)).any()
