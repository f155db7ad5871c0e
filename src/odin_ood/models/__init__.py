"""Networks of the ODIN paper (section 4.1, Appendix A.1), checkpoint loading, and any other
PyTorch classifier.

``build(name)`` gives an untrained zoo network; ``load(spec, weights=...)`` a trained classifier
in eval mode from a zoo name, a checkpoint, ``torchvision:NAME``/``timm:NAME``, a TorchScript
archive, a ``torch.export`` program or ``package.module:factory`` (see :mod:`.sources`); both
carry ``input_mean``, ``input_std``, ``input_shape``, ``num_classes``. ``fold_batch_norm(model)``
is the same function with batch norms folded into the convolutions before them (:mod:`.folding`).

Each model carries its preprocessing, attached once at load (:func:`odin_ood.preprocess.attach`) and
read through :func:`odin_ood.preprocess.declared_input`. Imports point down only, to
:mod:`odin_ood.preprocess`, :mod:`odin_ood.data` (channel statistics), :mod:`odin_ood.assets` (the shipped
weights) and :mod:`odin_ood._utils`; the detector, the experiments, the training and the commands import this.
"""

from odin_ood.models.checkpoint import read_state_dict, save_safetensors
from odin_ood.models.folding import fold_batch_norm
from odin_ood.models.sources import load
from odin_ood.models.zoo import ModelSpec, build, names, spec

__all__ = ["ModelSpec", "build", "fold_batch_norm", "load", "names", "read_state_dict", "save_safetensors", "spec"]
