import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: the worker thread then does not fight the GUI thread (and other
    processes) for two cores, which makes tiny runs many times faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
