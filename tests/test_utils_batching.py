import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from odin_ood._utils.batching import iter_batches, map_batches

OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def test_tensor_dataset_and_loader_give_the_same_batches():
    x, y = torch.rand(10, 1, 2, 2), torch.arange(10)
    a = torch.cat(list(iter_batches(x, 3)))
    b = torch.cat(list(iter_batches(TensorDataset(x, y), 3)))
    c = torch.cat(list(iter_batches(DataLoader(TensorDataset(x), batch_size=4), 3)))
    assert torch.equal(a, x) and torch.equal(b, x) and torch.equal(c, x)


def test_out_of_memory_halves_the_batch_and_continues():
    calls = []

    def fn(x):
        calls.append(len(x))
        if len(x) > 4:
            raise OOM("simulated CUDA out of memory")
        return x.flatten(1).sum(1)

    x = torch.rand(21, 1, 2, 2)
    got = map_batches(fn, x, batch_size=16)
    assert torch.allclose(got, x.flatten(1).sum(1))
    assert max(c for c in calls if c <= 4) == 4 and 16 in calls and 8 in calls


def test_out_of_memory_on_a_single_sample_is_raised():
    def fn(x):
        raise OOM("simulated")

    with pytest.raises(OOM):
        map_batches(fn, torch.rand(2, 1, 2, 2), batch_size=2)


def test_empty_and_wrong_types_are_rejected():
    with pytest.raises(ValueError, match="empty dataset"):
        list(iter_batches(TensorDataset(torch.zeros(0, 1, 2, 2)), 4))
    with pytest.raises(TypeError, match="Tensor, a Dataset or a DataLoader"):
        list(iter_batches([1, 2, 3], 4))
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_batches(torch.zeros(2, 1, 2, 2), 0))
