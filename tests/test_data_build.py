import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from odin_ood.data import load
from odin_ood.data.build import RESIZE_METHODS, random_crops, resize_images, to_grey


def _found_in(patch, image):
    windows = sliding_window_view(image, patch.shape)  # (H-s+1, W-s+1, 1, s, s, C)
    return bool((windows == patch).all(axis=(-3, -2, -1)).any())


def test_random_crops_come_from_their_image_and_are_seeded():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8) for i in range(5)]
    patches, corners = random_crops(images, 32, per_image=3, seed=7)
    assert patches.shape == (15, 32, 32, 3)
    for k, (patch, (r, c)) in enumerate(zip(patches, corners, strict=True)):
        np.testing.assert_array_equal(patch, images[k // 3][r : r + 32, c : c + 32])
        assert _found_in(patch, images[k // 3])
    again, _ = random_crops(images, 32, per_image=3, seed=7)
    other, _ = random_crops(images, 32, per_image=3, seed=8)
    assert again.tobytes() == patches.tobytes() and not np.array_equal(other, patches)
    with pytest.raises(ValueError, match="smaller than"):
        random_crops([np.zeros((20, 20, 3), np.uint8)], 32)


def test_bilinear_without_antialias_at_factor_two_is_the_2x2_mean():
    x = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    expected = np.rint(x.reshape(3, 32, 2, 32, 2, 3).astype(np.float64).mean(axis=(2, 4)))
    np.testing.assert_array_equal(resize_images(x, 32, "bilinear"), expected.astype(np.uint8))


def test_nearest_picks_pixels_and_methods_are_distinguishable():
    x = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    near = resize_images(x, 32, "nearest")
    assert set(np.unique(near)) <= set(np.unique(x))
    pil = np.asarray(Image.fromarray(x[0]).resize((32, 32), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(resize_images(x, 32, "bicubic")[0], pil)
    outs = {m: resize_images(x, 32, m) for m in RESIZE_METHODS if m != "area"}
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if {a, b} != {"bilinear-antialias", "bilinear-antialias-torch"}:  # torch's uint8 kernel is
                assert not np.array_equal(outs[a], outs[b]), (a, b)  # PIL's, ported: equal at a factor of 2
    with pytest.raises(ValueError, match="method must be one of"):
        resize_images(x, 32, "cubic")


def test_to_grey_matches_pil():
    x = np.random.default_rng(3).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    pil = np.stack([np.asarray(Image.fromarray(a).convert("L")) for a in x])
    np.testing.assert_array_equal(to_grey(x)[..., 0], pil)


def test_tiny_imagenet_test_set(shared_data):
    ds = load("tinyimagenet", root=shared_data)
    assert ds.images.shape == (10000, 3, 64, 64) and (ds.labels == -1).all()
    grey = (ds.images[:, 0] == ds.images[:, 1]).all(dim=(1, 2)) & (ds.images[:, 1] == ds.images[:, 2]).all(dim=(1, 2))
    assert 0 < int(grey.sum()) < 500  # "a few are greyscale", converted to RGB


def test_tinyimagenet_crop_patches_present_and_recorded(shared_data):
    tiny = load("tinyimagenet", root=shared_data).images.permute(0, 2, 3, 1).numpy()
    crop = load("tinyimagenet-crop", root=shared_data)
    assert crop.images.shape == (10000, 3, 32, 32)
    assert crop.manifest["seed"] == 0 and crop.manifest["sources"][0]["sha256"]
    patches = crop.images.permute(0, 2, 3, 1).numpy()
    for i in range(0, 10000, 997):
        assert _found_in(patches[i], tiny[i])
    other = load("tinyimagenet-crop", root=shared_data, seed=1, use_cache=False)
    assert other.manifest["seed"] == 1 and not np.array_equal(other.images.numpy(), crop.images.numpy())
    rebuilt = load("tinyimagenet-crop", root=shared_data, use_cache=False)
    assert rebuilt.images.numpy().tobytes() == crop.images.numpy().tobytes()


def test_tinyimagenet_resize_method_recorded_and_matters(shared_data):
    bilinear = load("tinyimagenet-resize", root=shared_data)
    nearest = load("tinyimagenet-resize", root=shared_data, method="nearest")
    assert bilinear.manifest["method"] == "bilinear" and nearest.manifest["method"] == "nearest"
    assert bilinear.images.shape == nearest.images.shape == (10000, 3, 32, 32)
    diff = (bilinear.images.float() - nearest.images.float()).abs().mean()
    assert diff > 3  # per-pixel mean difference of several grey levels


def test_cifar10bw_matches_an_independent_pil_pipeline(shared_data):
    bw = load("cifar10bw", root=shared_data, source="cifar10-lossless-1000")
    colour = load("cifar10-lossless-1000", root=shared_data)
    assert bw.images.shape == (1000, 1, 28, 28) and (bw.labels == -1).all()
    for i in (0, 500, 999):
        img = Image.fromarray(colour.images[i].permute(1, 2, 0).numpy()).convert("L")
        expected = np.asarray(img.resize((28, 28), Image.Resampling.BOX))
        np.testing.assert_array_equal(bw.images[i, 0].numpy(), expected)
    assert load("cifar10bw", root=shared_data).images.shape == (10000, 1, 28, 28)
