import pytest
import torch

from resnetlab.analysis import plots


@pytest.fixture
def drawn(monkeypatch):
    """The figures ``save_figure`` is given, left open for the test to read."""
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    yield figures
    for fig in figures:
        plots.plt.close(fig)


@pytest.mark.parametrize(
    ("k", "named", "counted"), [(6, True, True), (40, True, False), (500, False, False)]
)
def test_confusion_names_and_counts_what_stays_legible(drawn, tmp_path, k, named, counted):
    confusion = torch.eye(k, dtype=torch.int64) * 3
    names = [f"class {i}" for i in range(k)]
    plots.plot_confusion(confusion, names, tmp_path / "c.png")
    (fig,) = drawn
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert (labels == names) is named and (
        [t.get_text() for t in ax.get_yticklabels()] == names
    ) is named
    assert bool(ax.texts) is counted and all(t.get_text() == "3" for t in ax.texts)
    assert max(fig.get_size_inches()) <= 30  # 500 classes too: a picture that opens
