"""Tiny ImageNet's train/val layout (only the test split exists as real files here)."""

import re

import numpy as np
import pytest

from fixtures.formats import encode_image, write_zip
from odin_ood.data import load


def test_train_and_val_labels_follow_wnids(tmp_path):
    wnids = ["n02", "n01"]  # label order is wnids.txt order, not sorted
    files = {"tiny-imagenet-200/wnids.txt": "\n".join(wnids).encode()}
    for w in wnids:
        for k in range(3):
            files[f"tiny-imagenet-200/train/{w}/images/{w}_{k}.JPEG"] = encode_image(
                np.full((64, 64, 3), 10 * k, np.uint8), "JPEG"
            )
    ann = []
    for k, w in enumerate(["n01", "n02", "n01"]):
        files[f"tiny-imagenet-200/val/images/val_{k}.JPEG"] = encode_image(
            np.zeros((64, 64), np.uint8), "JPEG"
        )  # greyscale -> RGB
        ann.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63")
    files["tiny-imagenet-200/val/val_annotations.txt"] = "\n".join(ann).encode()
    (tmp_path / "tiny-imagenet").mkdir()
    write_zip(tmp_path / "tiny-imagenet" / "tiny-imagenet-200.zip", files)
    train = load("tinyimagenet", root=tmp_path, split="train")
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1] and train.classes == ("n02", "n01")
    val = load("tinyimagenet", root=tmp_path, split="val")
    assert val.labels.tolist() == [1, 0, 1] and val.images.shape == (3, 3, 64, 64)


def test_missing_tiny_imagenet_names_candidates(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("tiny-imagenet-200-test.zip")):
        load("tinyimagenet-crop", root=tmp_path)
