"""Pictures of class activation maps: one overlay per image, and grids of them.

An overlay is the image as the model saw it, beside the same image under the heat map,
with a caption below. Small inputs (SIGNS is 64x64) are enlarged with nearest-neighbour
pixels, so what is shown is exactly what the model was given; the map is enlarged
bilinearly, as it was computed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..analysis.fonts import default_font_file, font_runs
from ..errors import ResnetlabError, shown

DISPLAY_SIDE = 256  # overlays show each half at least this many pixels tall
MAX_OVERLAY_SIDE = 8192  # a larger side asked for is a mistake: 400 MB of pixels and more
NAME_CHARS = 32  # of a file name under a 128-pixel image on a sheet (about its width)
ALPHA = 0.5  # weight of the heat map in the blend
COLORMAP = "jet"  # the usual CAM colours: blue (low) to red (high)
_BACKGROUND = (255, 255, 255)
_INK = (0, 0, 0)


@functools.cache
def _font(size: int, path: str | None = None) -> ImageFont.FreeTypeFont:
    """The font file at ``path`` (default: DejaVu Sans), ``size`` pixels."""
    return ImageFont.truetype(path or default_font_file(), size)


def _text_width(text: str, size: int) -> int:
    """How wide ``_text`` draws ``text``, in pixels."""
    return sum(round(_font(size, path).getlength(run)) for path, run in font_runs(text))


def _wrapped(text: str, size: int, width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels, broken between words (a word wider
    than that alone on its line)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and _text_width(f"{lines[-1]} {word}", size) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int) -> None:
    """``text`` drawn in any script the installed fonts have: each run of characters in
    the font that has them."""
    x, y = xy
    for path, run in font_runs(text):
        font = _font(size, path)
        draw.text((x, y), run, fill=_INK, font=font)
        x += round(font.getlength(run))


def _array(a: torch.Tensor | np.ndarray) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def heat_map(cam: torch.Tensor | np.ndarray) -> np.ndarray:
    """(H, W) map in [0, 1] -> uint8 (H, W, 3) colours."""
    from matplotlib import colormaps  # matplotlib: only here, not where prediction starts

    rgb = colormaps[COLORMAP](np.clip(_array(cam), 0, 1))[..., :3]
    return (rgb * 255).round().astype(np.uint8)


def render_overlay(
    image: torch.Tensor | np.ndarray,
    cam: torch.Tensor | np.ndarray,
    caption: str = "",
    *,
    side: int = DISPLAY_SIDE,
) -> Image.Image:
    """The image and the image under its heat map, side by side, with a caption below.

    Args:
        image: uint8 (H, W, 3), the image as the model saw it.
        cam: (H, W) map in [0, 1] of the same size.
        caption: text under the pictures (several lines allowed).
        side: enlarge so that the image is at least this many pixels tall.

    Returns:
        An RGB PIL image.
    """
    _check_pixels(image)
    image, cam = _array(image), _array(cam).astype(np.float32)
    if image.shape[:2] != cam.shape:
        raise ValueError(f"image {image.shape[:2]} and map {cam.shape} differ in size")
    height, width = image.shape[:2]
    scale = max(1, math.ceil(side / height))
    size = (width * scale, height * scale)
    shown = Image.fromarray(image).resize(size, Image.NEAREST)
    cam_big = np.asarray(Image.fromarray(cam, mode="F").resize(size, Image.BILINEAR))
    blend = np.asarray(shown, dtype=np.float32) * (1 - ALPHA) + heat_map(cam_big) * ALPHA
    overlay = Image.fromarray(blend.round().astype(np.uint8))
    lines = caption.splitlines() or [""]
    text_size = max(12, size[1] // 18)
    line_height = _font(text_size).getbbox("Ag")[3] + 4
    gap = 4
    canvas = Image.new(
        "RGB", (2 * size[0] + gap, size[1] + line_height * len(lines) + 6), _BACKGROUND
    )
    canvas.paste(shown, (0, 0))
    canvas.paste(overlay, (size[0] + gap, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        _text(draw, (4, size[1] + 3 + i * line_height), line, text_size)
    return canvas


def _check_pixels(image: object) -> None:
    """Refuse, in one line, an image that is not uint8 (H, W, 3) pixels: the course's floats
    in [0, 1], a torchvision (3, H, W) tensor, a grey (H, W) array, which PIL and NumPy would
    stop on with 'Cannot handle this data type' or a broadcasting error."""
    if not isinstance(image, np.ndarray | torch.Tensor):
        pil = isinstance(image, Image.Image)
        got = "a PIL image; give np.asarray(image.convert('RGB'))" if pil else shown(image)
        raise ResnetlabError(
            f"image must be uint8 (H, W, 3) pixels, a NumPy array or tensor, got {got}"
        )
    shape, dtype = tuple(image.shape), str(image.dtype).removeprefix("torch.")
    if dtype == "uint8" and len(shape) == 3 and shape[2] == 3:
        return
    tensor = isinstance(image, torch.Tensor)
    fixes = []
    if image.is_floating_point() if tensor else image.dtype.kind == "f":
        scaled = "X.mul(255).round().byte()" if tensor else "(X * 255).round().astype('uint8')"
        fixes.append(f"for floats in [0, 1], give {scaled}")
    if len(shape) == 3 and shape[0] == 3 and shape[2] != 3:
        fixes.append(
            f"with the channels first, give X.{'permute' if tensor else 'transpose'}(1, 2, 0)"
        )
    fix = f"; {'; '.join(fixes)}" if fixes else ""
    raise ResnetlabError(f"image must be uint8 (H, W, 3) pixels, got {dtype} {shape}{fix}")


def tile(pictures: Sequence[Image.Image], *, columns: int = 4, title: str = "") -> Image.Image:
    """Pictures in a grid, row by row, each cell the size of the largest, under a title
    broken into lines as wide as the grid."""
    if not pictures:
        raise ValueError("nothing to tile")
    cell_w = max(p.width for p in pictures)
    cell_h = max(p.height for p in pictures)
    columns = min(columns, len(pictures))
    rows = math.ceil(len(pictures) / columns)
    text_size = max(14, cell_h // 14)
    pad = 8
    width = columns * (cell_w + pad) + pad
    lines = _wrapped(title, text_size, width - 2 * pad) if title else []
    line_height = _font(text_size).getbbox("Ag")[3] + 2
    top = len(lines) * line_height + 10 if lines else 0
    sheet = Image.new("RGB", (width, top + rows * (cell_h + pad) + pad), _BACKGROUND)
    for i, picture in enumerate(pictures):
        row, col = divmod(i, columns)
        sheet.paste(picture, (pad + col * (cell_w + pad), top + pad + row * (cell_h + pad)))
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(lines):
        _text(draw, (pad, 6 + i * line_height), line, text_size)
    return sheet


def shortened(name: str, limit: int = NAME_CHARS) -> str:
    """``name``, its middle replaced by an ellipsis where it is longer than ``limit``."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    return f"{name[:head]}…{name[len(name) - (limit - 1 - head) :]}"
