import zipfile

import numpy as np
from PIL import Image, ImageOps

from odin_ood.data import MNIST_STD, load


def test_omniglot_counts_and_mnist_convention(shared_data):
    ds = load("omniglot", root=shared_data)
    assert ds.images.shape == (2720 + 3120, 1, 28, 28) and (ds.labels == -1).all()
    assert ds.std == MNIST_STD and ds.manifest["method"] == "box"
    border = np.concatenate([ds.images[:, 0, 0].numpy().ravel(), ds.images[:, 0, -1].numpy().ravel()])
    assert (border == 0).mean() > 0.95  # black background
    assert ds.images.amax(dim=(1, 2, 3)).min() > 150  # white (if thin, grey-edged) strokes everywhere


def test_omniglot_first_image_matches_independent_conversion(shared_data):
    ds = load("omniglot", root=shared_data)
    with zipfile.ZipFile(shared_data / "omniglot" / "images_background_small1.zip") as z:
        first = sorted(n for n in z.namelist() if n.endswith(".png"))[0]
        with z.open(first) as f:
            img = Image.open(f).convert("L")
    assert img.size == (105, 105)
    expected = np.asarray(ImageOps.invert(img).resize((28, 28), Image.Resampling.BOX))
    np.testing.assert_array_equal(ds.images[0, 0].numpy(), expected)
