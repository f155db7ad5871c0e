"""Datasets of the ODIN paper, loaded from local files (nothing downloads at run time).

``load(name, root=..., split=..., **kw)`` returns an :class:`ImageDataset` (uint8 images in
memory, ``ds[i] -> (float [0,1] (C,H,W), label)``, ``.mean``/``.std`` = the family's
conventional channel statistics, for information only (odin-ood normalises with the model's
``input_mean``/``input_std``), ``.manifest`` = provenance); ``names()`` lists the registry, as
does ``odin-ood datasets``. ``root`` is laid out like the project's shared data folder.

Proven on the real files: mnist, notmnist, omniglot, cifar10-jpeg (train/test),
cifar10-lossless-1000, cifar10bw, tinyimagenet, tinyimagenet-crop/-resize (built from the
Tiny ImageNet test images), gaussian, uniform. Proven on fixtures in the exact real formats
(the files are not available here): cifar10 and cifar100 (official python pickles),
cifar80/cifar20, the paper's published folders (Imagenet, Imagenet_resize, LSUN,
LSUN_resize, iSUN) and lsun-crop/-resize built from raw LSUN images.

Imports point down only, to :mod:`odin_ood.preprocess` (the resampling) and :mod:`odin_ood._utils`;
the tuning (noise sets), the experiments and the commands import this.
"""

from odin_ood.data.dataset import CIFAR_MEAN, CIFAR_STD, MNIST_MEAN, MNIST_STD, ImageDataset
from odin_ood.data.registry import describe, load, names

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "ImageDataset",
    "describe",
    "load",
    "names",
]
