"""Fonts for text in any script: class names and file names need not be Latin.

matplotlib's figures and the explanation pictures both draw with DejaVu Sans (shipped with
matplotlib, so always there), which covers Latin, Greek and Cyrillic, and turn to the
installed ``FALLBACK_FONTS`` for what it lacks (Chinese, Japanese, Arabic...).
"""

from __future__ import annotations

import functools
import re
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import DataWarning, warn

# Tried in order for characters DejaVu Sans lacks; those installed are used. Noto and Droid
# cover most scripts on Linux, the others are the systems' own on macOS and Windows.
FALLBACK_FONTS = (
    "Noto Sans",
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans Arabic",
    "Noto Sans Hebrew",
    "Noto Sans Devanagari",
    "Noto Sans Thai",
    "Droid Sans Fallback",
    "WenQuanYi Zen Hei",
    "Arial Unicode MS",
    "Hiragino Sans",
    "PingFang SC",
    "Apple SD Gothic Neo",
    "Microsoft YaHei",
    "Yu Gothic",
    "Malgun Gothic",
    "Nirmala UI",
)
INSTALL_HINT = (
    "install a font that has them (e.g. Noto: the fonts-noto and fonts-noto-cjk packages), "
    "then delete matplotlib's font list (fontlist-*.json in matplotlib.get_cachedir()) so "
    "that it finds the new font"
)
# "missing from font(s) DejaVu Sans.", or in matplotlib 3.7 "missing from current font."
_MISSING_GLYPH = re.compile(r"Glyph (\d+) .* missing from (current )?font")
Drawing = TypeVar("Drawing", bound=Callable[..., Any])
# Whether this process has said that some characters are drawn as boxes (missing_glyphs).
_told = False
_told_lock = threading.Lock()  # serve draws maps in a thread of its own


def font_families(installed: set[str]) -> list[str]:
    """DejaVu Sans, then the ``FALLBACK_FONTS`` among ``installed`` (font family names)."""
    return ["DejaVu Sans", *(name for name in FALLBACK_FONTS if name in installed)]


def installed_families() -> set[str]:
    """The font families matplotlib knows of on this machine."""
    from matplotlib import font_manager

    return {font.name for font in font_manager.fontManager.ttflist}


def any_script(draw: Drawing) -> Drawing:
    """Draw ``draw``'s matplotlib text with the installed fallback fonts; characters none of
    them has are one warning that names the fix (``missing_glyphs``), not one of
    matplotlib's per character."""

    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        import matplotlib

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with matplotlib.rc_context({"font.family": font_families(installed_families())}):
                result = draw(*args, **kwargs)
        missing, passed_on = [], set()
        for w in caught:
            glyph = _MISSING_GLYPH.search(str(w.message))
            where = (str(w.message), w.category, w.filename, w.lineno)
            if glyph is None:
                if where not in passed_on:  # once each, as Python's default shows them
                    passed_on.add(where)
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            elif chr(int(glyph.group(1))) not in missing:
                missing.append(chr(int(glyph.group(1))))
        missing_glyphs(missing)
        return result

    return drawn  # type: ignore[return-value]


def missing_glyphs(chars: list[str]) -> None:
    """Warn that ``chars`` (if any), which no installed font has, are drawn as boxes, with
    the fix: once per process, as the fix is one for every picture (a server drawing a map
    for each request would otherwise say it for each)."""
    global _told
    if not chars:
        return
    with _told_lock:
        if _told:
            return
        _told = True
    shown = ", ".join(chars[:3]) + (", ..." if len(chars) > 3 else "")
    warn(
        f"some characters in the figure's text ({shown}) are drawn as boxes: no installed "
        f"font has them; {INSTALL_HINT}",
        DataWarning,
    )


def default_font_file() -> str:
    """DejaVu Sans's file, shipped with matplotlib."""
    path, _ = _font("DejaVu Sans")
    assert path is not None, "matplotlib ships DejaVu Sans"
    return path


def font_runs(text: str) -> list[tuple[str, str]]:
    """``text`` cut into runs of characters, each with the file of the first of
    ``font_families`` that has them (DejaVu Sans for a character none has: a box, and
    ``missing_glyphs``'s warning), as matplotlib falls back character by character."""
    families = font_families(installed_families())
    fonts = [_font(family) for family in families]
    fonts = [(path, covered) for path, covered in fonts if path is not None]
    runs: list[tuple[str, str]] = []
    missing: list[str] = []
    for char in text:
        path = next((p for p, covered in fonts if ord(char) in covered), None)
        if path is None:
            if char not in missing:
                missing.append(char)
            path = default_font_file()
        if char.isspace() and runs:
            path = runs[-1][0]  # a space stays in the run it is in
        if runs and runs[-1][0] == path:
            runs[-1] = (path, runs[-1][1] + char)
        else:
            runs.append((path, char))
    missing_glyphs(missing)
    return runs


@functools.cache
def _font(family: str) -> tuple[str | None, frozenset[int]]:
    """(the family's font file, the code points it has), or (None, empty) when the family
    is not installed."""
    from matplotlib import font_manager, ft2font

    try:
        path = font_manager.findfont(
            font_manager.FontProperties(family=family), fallback_to_default=False
        )
    except ValueError:
        return None, frozenset()
    return path, frozenset(ft2font.FT2Font(path).get_charmap())
