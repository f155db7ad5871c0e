"""export.metadata.model_metadata reads an ONNX file's metadata_props as the onnx package does,
and refuses exactly the byte strings that onnx refuses, for every truncation of a real model."""

from __future__ import annotations

import pytest

from odin_ood.export.metadata import model_metadata

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402 -- after the importorskip that skips this module without onnx


def onnx_metadata(blob: bytes) -> dict[str, str]:
    model = onnx.ModelProto()
    model.ParseFromString(blob)
    return {p.key: p.value for p in model.metadata_props}


def small_model() -> bytes:
    """A one-node model with an initializer, doc strings, opsets and three metadata entries (one
    key twice: the later wins), non-ASCII text included."""
    import numpy as np

    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"], doc_string="x times w")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [weight],
    )
    model = helper.make_model(graph, producer_name="odin-ood test", doc_string="détecteur")
    for key, value in (
        ("odin_ood.cache_key", "first"),
        ("odin_ood.input", "pixels in [0, 1] — float32"),
        ("odin_ood.cache_key", "odin-gate-b4-abc"),
    ):
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def test_metadata_of_a_model_equals_onnx():
    blob = small_model()
    assert (
        model_metadata(blob)
        == onnx_metadata(blob)
        == {"odin_ood.cache_key": "odin-gate-b4-abc", "odin_ood.input": "pixels in [0, 1] — float32"}
    )


def test_every_truncation_is_refused_exactly_when_onnx_refuses_it():
    blob = small_model()
    refused = 0
    for end in range(len(blob)):
        cut = blob[:end]
        try:
            want = onnx_metadata(cut)
        except Exception:  # protobuf's DecodeError
            want = None
            refused += 1
        if want is None:
            with pytest.raises(ValueError):
                model_metadata(cut)
        else:
            assert model_metadata(cut) == want
    assert 0 < refused < len(blob)  # both cases were seen


def test_fixed_size_and_unknown_fields_are_skipped():
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    entry = b"\x0a\x01k\x12\x01v"  # key "k", value "v"
    blob = (
        varint(99 << 3 | 1)
        + bytes(8)
        + varint(98 << 3 | 5)
        + bytes(4)
        + varint(97 << 3 | 0)
        + varint(300)
        + varint(14 << 3 | 2)
        + varint(len(entry))
        + entry
    )
    assert model_metadata(blob) == onnx_metadata(blob) == {"k": "v"}
    for bad in (varint(99 << 3 | 3), varint(99 << 3 | 1) + bytes(7), b"\x00\x01", b"\xff" * 11):
        with pytest.raises(ValueError):
            model_metadata(bad)
