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


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def notes(monkeypatch):
    """Notifications the widget shows, as (kind, message)."""
    from napari_dip._napari import widgets as widgets_module

    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(widgets_module, "show_error", lambda m: seen.append(("error", m)))
    monkeypatch.setattr(widgets_module, "show_warning", lambda m: seen.append(("warning", m)))
    return seen
