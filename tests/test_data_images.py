"""Folder/zip decoding and the <split>/<class>/<file> loader: layouts and damaged inputs."""

import numpy as np
import pytest

from fixtures.formats import encode_image, write_zip
from odin_ood.data.dataset import CIFAR_MEAN, CIFAR_STD
from odin_ood.data.folders import load_class_folders
from odin_ood.data.images import ImageSource, decode_images

KW = {"name": "t", "mean": CIFAR_MEAN, "std": CIFAR_STD}


def _png(v):
    return encode_image(np.full((8, 8, 3), v, np.uint8), "PNG")


def test_zip_and_folder_give_the_same_set(tmp_path):
    files = {f"test/{c}/{i}.png": _png(10 * i) for c, idx in (("b", [2, 0]), ("a", [1, 3])) for i in idx}
    write_zip(tmp_path / "s.zip", files)
    for name, data in files.items():
        (tmp_path / "dir" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "dir" / name).write_bytes(data)
    z = load_class_folders(tmp_path / "s.zip", "test", **KW)
    d = load_class_folders(tmp_path / "dir", "test", **KW)
    assert z.labels.tolist() == d.labels.tolist() == [1, 0, 1, 0]  # global integer order
    assert z.images[:, 0, 0, 0].tolist() == [0, 10, 20, 30]
    assert np.array_equal(z.images.numpy(), d.images.numpy()) and z.classes == ("a", "b")


def test_wrong_layout_and_unknown_class(tmp_path):
    write_zip(tmp_path / "flat.zip", {"test/x.png": _png(0)})
    with pytest.raises(ValueError, match=r"flat.zip!test/x.png: expected 'test/<class>/<file>'"):
        load_class_folders(tmp_path / "flat.zip", "test", **KW)
    write_zip(tmp_path / "c.zip", {"test/zebra/0.png": _png(0)})
    with pytest.raises(ValueError, match="zebra"):
        load_class_folders(tmp_path / "c.zip", "test", classes=("cat",), **KW)
    with pytest.raises(ValueError, match="no images under 'train/"):
        load_class_folders(tmp_path / "c.zip", "train", **KW)


def test_truncated_zip_names_file(tmp_path):
    write_zip(tmp_path / "t.zip", {f"test/a/{i}.png": _png(i) for i in range(20)})
    (tmp_path / "t.zip").write_bytes((tmp_path / "t.zip").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"t\.zip: not a readable zip"):
        ImageSource(tmp_path / "t.zip")


def test_mixed_sizes_named_and_parallel_decode_agrees(tmp_path):
    files = {f"{i:05d}.png": encode_image(np.full((4, 4, 3), i % 256, np.uint8), "PNG") for i in range(4100)}
    files["99999.png"] = encode_image(np.zeros((5, 4, 3), np.uint8), "PNG")
    write_zip(tmp_path / "m.zip", files)
    with ImageSource(tmp_path / "m.zip") as src:
        members = src.images()
        with pytest.raises(ValueError, match=r"99999.png: image is \(5, 4, 3\)"):
            decode_images(src, members, workers=1)
        serial = decode_images(src, members[:-1], workers=1)
        parallel = decode_images(src, members[:-1], workers=2)
    assert np.array_equal(serial, parallel) and serial[:, 0, 0, 0].tolist()[:3] == [0, 1, 2]
