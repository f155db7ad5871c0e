"""A model that cannot become one traced ONNX graph is one error line naming the construct or
the operator (and where the model uses it), suggesting ``--runtime torch`` where eager scoring
works, and nothing is written: data-dependent control flow, a data-dependent shape, a tuple
output, an in-place change of the input, an operator torch.onnx's exporter cannot translate.
Each model is the shipped MNIST LeNet with that one construct added (tests/export_support.py),
its detector fitted on real MNIST digits against notMNIST letters."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from export_support import branching, bright_pixel_count, in_place_input, inverse_erf, tuple_output
from odin_ood import Detector, data, models
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.runtimes import load_runtime
from odin_ood.runtimes.eager import EagerRuntime

pytest.importorskip("onnxscript")
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def spec_of(model) -> Preprocessing:
    return Preprocessing(tuple(model.input_shape), mean=tuple(model.input_mean), std=tuple(model.input_std))


@pytest.fixture(scope="module")
def fitted(shared_data):
    """ODIN at T = 1000, epsilon = 0.0014 for the shipped LeNet, fitted on 100 MNIST digits and
    100 notMNIST letters, and 16 other real images."""
    digits, letters = data.load("mnist", root=shared_data), data.load("notmnist", root=shared_data)
    model = models.load("mnist-lenet")
    spec = spec_of(model)
    det = Detector(model, temperatures=(1000.0,), epsilons=(0.0014,), batch_size=8, normalise=False)
    det.fit(normalise(digits.images[:100].float() / 255, spec), normalise(letters.images[:100].float() / 255, spec))
    x = torch.cat([digits.images[4000:4008], letters.images[4000:4008]]).float() / 255
    return det, x


def with_model(det: Detector, model) -> Detector:
    """``det`` (same fitted T, epsilon, threshold; same weights fingerprint) scoring with ``model``."""
    other = copy.copy(det)
    other.model = model
    return other


WHERE = r"\(at \S*export_support\.py:\d+: `{}`\)"
CASES = {
    "branching": (
        branching,
        r"data-dependent control flow \(a Python value read from a tensor: `if` on a tensor, "
        r"\.item\(\), int\(\), bool\(\)\) "
        + WHERE.format(re.escape("if x.mean() > 5.0:  # data-dependent control flow")),
        True,
    ),
    "bright_pixel_count": (
        bright_pixel_count,
        r"aten\.nonzero\.default, whose output's shape depends on the pixel "
        r"values",
        True,
    ),
    "inverse_erf": (inverse_erf, r"torch\.onnx cannot export the gate: .*prims\.erf_inv", True),
    "tuple_output": (tuple_output, r"the model returns a tuple, not one \(batch, classes\) tensor of logits", False),
    "in_place_input": (
        in_place_input,
        r"the model fails in eager scoring too: RuntimeError: a leaf Variable that "
        r"requires grad is being used in an in-place operation " + WHERE.format(re.escape("x.clamp_(min=-1.0)")),
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unexportable_model_is_one_error_line_naming_the_construct_and_nothing_is_written(fitted, case, tmp_path):
    pytest.importorskip("onnxruntime")
    det, x = fitted
    factory, pattern, eager_works = CASES[case]
    bad = with_model(det, factory())
    with pytest.raises(ValueError) as caught:  # the command line's one-line errors
        load_runtime("onnxruntime", bad, spec_of(bad.model), threads=1, cache_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and re.search(pattern, message), message
    assert message.endswith(": score it with --runtime torch") == eager_works, message
    assert list(tmp_path.iterdir()) == []  # no graph, no temporary file
    if eager_works:  # the advice holds: eager scoring gives the gate's outputs
        got = EagerRuntime(bad, spec_of(bad.model)).outputs(x)
        assert got["score"].shape == (16,) and torch.isfinite(got["score"]).all()


def test_a_data_dependent_shape_would_have_changed_scores_silently(fitted):
    """Why the refusal: the eager scores of the bright-pixel model depend on each image's count,
    which a graph traced on one example would fix (scaled logits change ODIN's scores)."""
    det, x = fitted
    spec = spec_of(det.model)
    plain = EagerRuntime(det, spec).outputs(x)["score"]
    counted = EagerRuntime(with_model(det, bright_pixel_count()), spec).outputs(x)["score"]
    assert (plain - counted).abs().max().item() > 1e-4


@pytest.mark.parametrize(
    "kernel,stride,padding,dilation,ceil_mode",
    [
        (2, 2, 0, 1, False),
        (2, 2, 0, 1, True),
        (3, 2, 1, 1, False),
        (3, 2, 1, 1, True),
        (3, 1, 1, 2, False),
        ((2, 3), (1, 2), (1, 0), 1, True),
        (1, 1, 0, 1, False),
    ],
)
def test_the_max_pool_rule_gives_torch_s_values_and_indices_with_ties(kernel, stride, padding, dilation, ceil_mode):
    """The rule against torch's own CPU kernel on odd sizes, with many ties (values in {0, 1, 2}:
    the first maximum of a window in row-major order is the one whose gradient counts) and a NaN
    (it propagates to its windows' values)."""
    from odin_ood.export.rules import max_pool2d_with_indices

    x = torch.randint(0, 3, (2, 3, 9, 7), generator=torch.Generator().manual_seed(0)).float()
    x[1, 2, 4, 4] = float("nan")
    args = [
        list(kernel) if isinstance(kernel, tuple) else [kernel],
        list(stride) if isinstance(stride, tuple) else [stride],
        list(padding) if isinstance(padding, tuple) else [padding],
        [dilation],
        ceil_mode,
    ]
    want_values, want_indices = torch.ops.aten.max_pool2d_with_indices(x, *args)
    values, indices = max_pool2d_with_indices(x, *args)
    assert torch.equal(values.isnan(), want_values.isnan()) and values.isnan().any()
    assert torch.equal(values.nan_to_num(), want_values.nan_to_num())
    finite = ~want_values.isnan()  # a window holding the NaN has no gradient that ODIN's score can use
    assert torch.equal(indices[finite], want_indices[finite])


class Attending(torch.nn.Module):
    """Patches of 7 x 7 pixels as 16 tokens of 768 features through one multi-head attention (12
    heads), then a linear head: at this width torch's matmul runs the attention's input projection
    of the (tokens, batch, features) view as bmm with the weight expanded over the tokens."""

    input_shape, input_mean, input_std = (1, 28, 28), (0.1307,), (0.3081,)

    def __init__(self) -> None:
        super().__init__()
        self.patches = torch.nn.Conv2d(1, 768, 7, stride=7)
        self.attention = torch.nn.MultiheadAttention(768, 12, batch_first=True)
        self.head = torch.nn.Linear(768, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        return self.head(self.attention(tokens, tokens, tokens, need_weights=False)[0].mean(1))


def expanded_weights(path) -> list[tuple[int, ...]]:
    """The shapes of the 2-d weights that an Expand node of the ONNX file at ``path`` reads."""
    import onnx

    model = onnx.load(str(path))
    weights = {w.name: tuple(w.dims) for w in model.graph.initializer}
    return [
        weights[n.input[0]] for n in model.graph.node if n.op_type == "Expand" and len(weights.get(n.input[0], ())) == 2
    ]


def test_an_expanded_weight_is_read_by_broadcasting_not_written_out(fitted, tmp_path, monkeypatch):
    """ONNX's Expand writes every copy of a weight that torch expands as a view (ViT-B/16 at 384
    px: 4 GB per attention layer, ONNX Runtime killed for memory): the exported graph reads the
    weight itself, broadcast by MatMul, and still gives eager scoring's outputs."""
    pytest.importorskip("onnxruntime")
    from odin_ood.export import graph

    det, x = fitted
    torch.manual_seed(0)
    attending = with_model(det, Attending().eval())
    attending.input_std, attending.input_mean = Attending.input_std, Attending.input_mean
    spec = spec_of(attending.model)
    with monkeypatch.context() as undone:
        undone.setattr(graph, "unexpand_weights", lambda model: None)
        raw = graph.export_onnx(attending, spec, None, tmp_path / "raw.onnx")
    assert (768, 2304) in expanded_weights(raw)  # what the trace gives: the input projection, copied per token
    runtime = load_runtime("onnxruntime", attending, spec, threads=1, cache_dir=tmp_path / "cache")
    assert expanded_weights(runtime.path) == []
    got, want = runtime.outputs(x), EagerRuntime(attending, spec).outputs(x)
    assert (got["score"].double() - want["score"].double()).abs().max() <= 1e-5
    assert torch.equal(got["predicted_class"], want["predicted_class"])
