"""Networks of the ODIN paper (section 4.1, Appendix A.1) and checkpoint loading.

``build(name)`` gives an untrained network, ``load(name_or_path, weights=...)`` a trained one in
eval mode; both carry ``input_mean``, ``input_std``, ``input_shape``, ``num_classes``.
"""

from odin_ood.models.checkpoint import read_state_dict, save_safetensors
from odin_ood.models.zoo import ModelSpec, build, load, names, spec

__all__ = ["ModelSpec", "build", "load", "names", "read_state_dict", "save_safetensors", "spec"]
