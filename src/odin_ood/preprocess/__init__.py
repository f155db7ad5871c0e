"""How an image becomes a model's input, from what to how (timm's ``data/config.py`` resolves,
``transforms_factory.py`` builds: the same split).

* :mod:`~odin_ood.preprocess.spec`: the :class:`Preprocessing`, what an image becomes (input
  size, channels, resize, interpolation, mean, std), frozen and saved in the detector file;
* :mod:`~odin_ood.preprocess.images`: how: decoding with its limits, resizing, cropping,
  normalising (:func:`image_tensor`, :func:`image_pixels`, :func:`normalise`);
* :mod:`~odin_ood.preprocess.resampling`: the interpolation filters, one name each;
* :mod:`~odin_ood.preprocess.model_input`: what a model declares (:func:`declared_input`, the
  one reader of a model's preprocessing, attached once at load) and how the scoring functions'
  ``normalise`` reads ``x`` (pixels or the model's input).

The bottom layer with :mod:`odin_ood.data` and :mod:`odin_ood.models`: it imports only
:mod:`odin_ood._utils`; the scores, the detector, the commands and the export import it.
"""

from odin_ood.preprocess.images import (
    MIN_SIDE_CAP,
    InputError,
    array_pixels,
    array_tensor,
    check_min_side,
    check_side,
    decode,
    image_pixels,
    image_tensor,
    normalise,
)
from odin_ood.preprocess.model_input import Declared, attach, declared_input, of_model
from odin_ood.preprocess.resampling import INTERPOLATIONS
from odin_ood.preprocess.spec import CROP_FRACTION, MAX_SIZE, RESIZES, Preprocessing, close_values, floats

__all__ = [
    "CROP_FRACTION",
    "INTERPOLATIONS",
    "MAX_SIZE",
    "MIN_SIDE_CAP",
    "RESIZES",
    "Declared",
    "InputError",
    "Preprocessing",
    "array_pixels",
    "array_tensor",
    "attach",
    "check_min_side",
    "check_side",
    "close_values",
    "declared_input",
    "decode",
    "floats",
    "image_pixels",
    "image_tensor",
    "normalise",
    "of_model",
]
