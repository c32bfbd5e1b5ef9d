import warnings

import pytest
import torch

from resnetlab.analysis import fonts, plots
from resnetlab.errors import DataWarning

pytestmark = pytest.mark.figures


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


@pytest.mark.parametrize(
    "names", [["Flugzeug", "bateau à voile", "cat", "dog"], ["a", "b"], list("0123456789")]
)
def test_class_names_under_the_columns_do_not_overlap(drawn, tmp_path, names):
    plots.plot_confusion(torch.eye(len(names), dtype=torch.int64), names, tmp_path / "c.png")
    (fig,) = drawn
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].get_xticklabels()]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    upright = [t.get_rotation() == 0 for t in fig.axes[0].get_xticklabels()]
    assert all(upright) is (max(map(len, names)) == 1)  # short names stay upright


@pytest.mark.parametrize("k", [3, 6, 12])
def test_long_class_names_leave_the_matrix_its_room_and_the_title_whole(drawn, tmp_path, k):
    # Names of 30 letters took their room from the matrix, which shrank to a corner while
    # the title, centred over it, ran off the figure's right edge.
    names = [f"very_long_class_name_for_no_{i:02d}" for i in range(k)]
    title = "best.safetensors on photos/test (60 images, accuracy 0.4167)"
    plots.plot_confusion(torch.eye(k, dtype=torch.int64), names, tmp_path / "c.png", title=title)
    (fig,) = drawn
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    (ax,) = fig.axes
    texts = [ax.title, *ax.get_xticklabels(), *ax.get_yticklabels()]
    for text in texts:
        box = text.get_window_extent(renderer)
        assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1, text.get_text()
        assert canvas.y0 <= box.y0 and box.y1 <= canvas.y1, text.get_text()
    short = ["a"] * k  # the matrix drawn for names of one letter
    plots.plot_confusion(torch.eye(k, dtype=torch.int64), short, tmp_path / "c.png", title=title)
    width = ax.get_window_extent(renderer).width / fig.dpi
    assert width >= 0.8 * drawn[1].axes[0].get_window_extent().width / drawn[1].dpi


@pytest.mark.parametrize(
    "message",
    [
        "Glyph 26085 (\\N{CJK UNIFIED IDEOGRAPH-65E5}) missing from font(s) DejaVu Sans.",
        "Glyph 26085 (\\N{CJK UNIFIED IDEOGRAPH-65E5}) missing from current font.",  # 3.7
    ],
)
def test_matplotlibs_missing_glyph_warnings_are_recognised_in_each_wording(message):
    assert fonts._MISSING_GLYPH.search(message)[1] == "26085"


def test_characters_no_font_has_are_one_warning_naming_the_fix(drawn, tmp_path, monkeypatch):
    monkeypatch.setattr(fonts, "installed_families", set)  # DejaVu Sans alone: no CJK
    monkeypatch.setattr(fonts, "_told", False)  # said once per process: as in a new one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.plot_confusion(torch.eye(2, dtype=torch.int64), ["日本", "中国"], tmp_path / "c.png")
    # (older matplotlib adds pyparsing's deprecation warnings, which are no concern here)
    (warning,) = [w for w in caught if not issubclass(w.category, DeprecationWarning)]
    assert warning.category is DataWarning
    assert str(warning.message).startswith("some characters in the figure's text (日, 本, 中, ...)")
    assert "fonts-noto-cjk" in str(warning.message)


def test_text_is_cut_into_runs_each_in_a_font_that_has_it(monkeypatch):
    latin, cjk = frozenset(map(ord, "abc .-")), frozenset(map(ord, "日本"))
    files = {"DejaVu Sans": ("dejavu.ttf", latin), "Noto Sans CJK JP": ("noto.ttf", cjk)}
    monkeypatch.setattr(fonts, "installed_families", lambda: {"Noto Sans CJK JP", "Other"})
    monkeypatch.setattr(fonts, "_font", lambda family: files.get(family, (None, frozenset())))
    monkeypatch.setattr(fonts, "_told", False)
    with pytest.warns(DataWarning, match=r"text \(ж\) are drawn as boxes"):
        runs = fonts.font_runs("ab 日本 c.ж")
    assert runs == [
        ("dejavu.ttf", "ab "),
        ("noto.ttf", "日本 "),
        ("dejavu.ttf", "c.ж"),  # a character no font has: DejaVu's box, and a warning
    ]


def test_other_warnings_of_a_drawing_pass_through_once_each():
    @fonts.any_script
    def draw():
        for _ in range(5):  # as a palette warning of each image a contact sheet reads
            warnings.warn("an image's palette", UserWarning, stacklevel=1)
        return "drawn"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert draw() == "drawn"
    assert [str(w.message) for w in caught] == ["an image's palette"]
