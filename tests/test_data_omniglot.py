"""Omniglot as the originals build it: alphabet selection, content de-duplication, polarity."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from odin_ood.data import MNIST_STD, load
from odin_ood.data.content import content_hashes
from odin_ood.data.omniglot import SAFE_ALPHABETS


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def _glyph(seed: int) -> np.ndarray:
    """A 105x105 1-bit character: black (0) strokes on white (255)."""
    img = np.full((105, 105), 255, np.uint8)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        r, c = rng.integers(10, 90, 2)
        img[r : r + 6, c : c + 40] = 0
    return img


@pytest.fixture
def two_zips(tmp_path):
    """Greek is in both zips with the same two images (as the shared small1/small2 zips); Korean
    (not a safe alphabet) and Latin only in one each; one Latin image repeats a Greek one."""
    g0, g1, k0, l0 = _glyph(0), _glyph(1), _glyph(2), _glyph(3)
    layout = {
        "small1": {"Greek/character01/a.png": g0, "Greek/character02/b.png": g1, "Korean/character01/c.png": k0},
        "small2": {
            "Greek/character01/a.png": g0,
            "Greek/character02/b.png": g1,
            "Latin/character01/d.png": l0,
            "Latin/character02/e.png": g1,
        },
    }
    (tmp_path / "omniglot").mkdir()
    for stem, members in layout.items():
        with zipfile.ZipFile(tmp_path / "omniglot" / f"images_background_{stem}.zip", "w") as z:
            for name, img in members.items():
                z.writestr(f"images_background_{stem}/{name}", _png(img))
    return tmp_path, {"greek": (g0, g1), "korean": k0, "latin": l0}


def _box28(img: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((28, 28), Image.Resampling.BOX))


def test_omniglot_drops_content_duplicates_and_unsafe_alphabets(two_zips):
    root, g = two_zips
    ds = load("omniglot", root=root)
    # small1: Greek a, b (Korean skipped); small2: Greek a, b and Latin e repeat -> only Latin d is new
    expected = np.stack([_box28(g["greek"][0]), _box28(g["greek"][1]), _box28(g["latin"])])
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), expected)
    m = ds.manifest
    assert (m["alphabets"], m["alphabets_used"], m["duplicates_dropped"]) == ("hendrycks-gimpel", ["Greek", "Latin"], 3)
    assert [s["selected"] for s in m["sources"]] == [2, 4]
    assert len(set(content_hashes(ds.images.numpy()))) == len(ds)


def test_omniglot_alphabet_selection_all_and_explicit(two_zips):
    root, g = two_zips
    assert load("omniglot", root=root, alphabets="all").manifest["alphabets_used"] == ["Greek", "Korean", "Latin"]
    korean = load("omniglot", root=root, alphabets=["Korean"])
    np.testing.assert_array_equal(korean.images[0, 0].numpy(), _box28(g["korean"]))
    assert korean.manifest["alphabets"] == "explicit"
    with pytest.raises(ValueError, match=r"alphabets \['Tifinagh'\] not found"):
        load("omniglot", root=root, alphabets=["Korean", "Tifinagh"])
    with pytest.raises(ValueError, match="alphabets must be"):
        load("omniglot", root=root, alphabets="safe")


def test_omniglot_polarity_is_explicit_and_recorded(two_zips):
    root, g = two_zips
    stored, inverted = load("omniglot", root=root, invert=False), load("omniglot", root=root, invert=True)
    assert stored.manifest["invert"] is False and inverted.manifest["invert"] is True
    assert stored.images[0, 0, 0, 0] == 255 and inverted.images[0, 0, 0, 0] == 0  # background
    expected = np.asarray(Image.fromarray(255 - g["greek"][0]).resize((28, 28), Image.Resampling.BOX))
    np.testing.assert_array_equal(inverted.images[0, 0].numpy(), expected)
    with pytest.raises(ValueError, match="invert must be True or False"):
        load("omniglot", root=root, invert="yes")


def test_safe_alphabets_are_hendrycks_and_gimpels_indices():
    background = sorted(
        [
            "Alphabet_of_the_Magi",
            "Anglo-Saxon_Futhorc",
            "Arcadian",
            "Armenian",
            "Asomtavruli_(Georgian)",
            "Balinese",
            "Bengali",
            "Blackfoot_(Canadian_Aboriginal_Syllabics)",
            "Braille",
            "Burmese_(Myanmar)",
            "Cyrillic",
            "Early_Aramaic",
            "Futurama",
            "Grantha",
            "Greek",
            "Gujarati",
            "Hebrew",
            "Inuktitut_(Canadian_Aboriginal_Syllabics)",
            "Japanese_(hiragana)",
            "Japanese_(katakana)",
            "Korean",
            "Latin",
            "Malay_(Jawi_-_Arabic)",
            "Mkhedruli_(Georgian)",
            "N_Ko",
            "Ojibwe_(Canadian_Aboriginal_Syllabics)",
            "Sanskrit",
            "Syriac_(Estrangelo)",
            "Tagalog",
            "Tifinagh",
        ]
    )
    assert tuple(background[i] for i in (0, 2, 5, 6, 8, 12, 13, 14, 15, 16, 17, 18, 19, 21, 26)) == SAFE_ALPHABETS


def test_omniglot_on_the_shared_zips(shared_data):
    ds = load("omniglot", root=shared_data)
    # safe alphabets here: Balinese 480, Greek 480 in both zips, Japanese (katakana) 940, Latin 520 in
    # both zips, Sanskrit 840: Greek's and Latin's second copies are byte-identical and dropped
    assert ds.manifest["alphabets_used"] == ["Balinese", "Greek", "Japanese_(katakana)", "Latin", "Sanskrit"]
    assert (len(ds), ds.manifest["duplicates_dropped"]) == (480 + 480 + 940 + 520 + 840, 480 + 520)
    assert len(set(content_hashes(ds.images.numpy()))) == len(ds) and ds.std == MNIST_STD
    border = np.concatenate([ds.images[:, 0, 0].numpy().ravel(), ds.images[:, 0, -1].numpy().ravel()])
    assert (border == 255).mean() > 0.95  # white background: the stored polarity


def test_omniglot_first_image_matches_independent_conversion(shared_data):
    ds = load("omniglot", root=shared_data, invert=True)
    with zipfile.ZipFile(shared_data / "omniglot" / "images_background_small1.zip") as z:
        first = sorted(n for n in z.namelist() if n.endswith(".png"))[0]
        with z.open(first) as f:
            img = Image.open(f).convert("L")
    assert img.size == (105, 105) and "Balinese" in first
    expected = np.asarray(Image.fromarray(255 - np.asarray(img)).resize((28, 28), Image.Resampling.BOX))
    np.testing.assert_array_equal(ds.images[0, 0].numpy(), expected)
