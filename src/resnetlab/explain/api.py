"""``explain(model, images)``: class activation maps of image files, and what to write for them."""

from __future__ import annotations

import operator
import os
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..analysis.fonts import any_script
from ..data.decode import IMAGE_EXTENSIONS
from ..data.folders import images_in
from ..data.sources import H5_SUFFIXES
from ..engine.distributed import resolve_device
from ..engine.predict import Inputs, load_inputs, model_batches
from ..errors import (
    ResnetlabError,
    count_argument,
    on_command_line,
    option,
    path_argument,
    shown,
)
from ..models import ModelMeta, load_model, model_info
from ..models.files import near_class_names, usage_defaults
from ..storage import atomic_write, check_writable, write_error
from .cam import check_method, class_activation_maps, coarse_map_note, find_layer, model_on
from .render import MAX_OVERLAY_SIDE, render_overlay, shortened, tile

SHEET_LIMIT = 64  # images on a contact sheet; more are written as overlays only
SHEET_SIDE = 128  # pixels of each image on the sheet
SHOWN_SOURCES = 3  # the images an Explanation's repr names
SHEET_STEM = "sheet"  # the contact sheet is sheet.png


@dataclass
class Explanation:
    """Class activation maps of some images, and what the model predicted for them."""

    sources: list[str]
    images: torch.Tensor  # uint8 (N, H, W, 3): each image as the model saw it
    maps: torch.Tensor  # float32 (N, H, W) in [0, 1]
    probabilities: torch.Tensor  # float32 (N, K)
    targets: torch.Tensor  # int64 (N,): the class each map explains
    class_names: list[str]
    method: str
    layer: str
    # What to know about the maps: a layer's feature map too coarse to point at a place.
    notes: list[str] = field(default_factory=list)

    @property
    def predicted(self) -> torch.Tensor:
        return self.probabilities.argmax(1)

    def __repr__(self) -> str:
        # One line: the tensors (and a folder's file names) are attributes to look at, not
        # to have printed whole.
        n, shown = len(self.sources), ", ".join(map(repr, self.sources[:SHOWN_SOURCES]))
        more = f", ... {n} in all" if n > SHOWN_SOURCES else ""
        return (
            f"Explanation(sources=[{shown}{more}], method={self.method!r}, "
            f"layer={self.layer!r}, maps={tuple(self.maps.shape)})"
        )

    def caption(self, i: int, *, on_sheet: bool = False) -> str:
        """``"B 97.1%"``, and the class the map explains when it is another one; then the
        method and layer, or ``on_sheet`` (whose title names those) the image's file name."""
        i = self._index(i)
        pred = int(self.predicted[i])
        text = f"{self.class_names[pred]} {self.probabilities[i, pred]:.1%}"
        target = int(self.targets[i])
        if target != pred:
            text += f"; map of {self.class_names[target]} {self.probabilities[i, target]:.1%}"
        below = shortened(self._sheet_name(i)) if on_sheet else f"{self.method}, {self.layer}"
        return f"{text}\n{below}"

    def _sheet_name(self, i: int) -> str:
        """Image ``i``'s file name; with as many of its folders' names as tell it from
        another image of the same name (``cat/IMG_0001.jpg`` and ``dog/IMG_0001.jpg``), as
        its overlay's name has; and the overlay's number where that still repeats (the
        same file twice)."""
        tails = _distinct_tails([Path(s) for s in self.sources], lambda p: p.name)
        name = "/".join(tails[i])
        if tails.count(tails[i]) > 1:
            return f"{_file_names(self.sources)[i].split('-', 1)[0]}-{name}"
        return name

    def overlay(self, i: int, *, side: int | None = None, on_sheet: bool = False) -> Image.Image:
        """Image ``i`` beside its heat map, captioned with the prediction."""
        kwargs = {} if side is None else {"side": count_argument(side, "side")}
        if kwargs and kwargs["side"] > MAX_OVERLAY_SIDE:  # two panels of side x side pixels
            raise ResnetlabError(
                f"side must be at most {MAX_OVERLAY_SIDE:,} pixels, got {kwargs['side']:,}"
            )
        caption = self.caption(i, on_sheet=on_sheet)
        return render_overlay(self.images[i], self.maps[i], caption, **kwargs)

    def _index(self, i: object) -> int:
        """``i`` as the index of one of the images, or one line saying which there are."""
        n = len(self.sources)
        try:
            index = operator.index(i)  # ints, numpy's too; not text, floats or bools
        except TypeError:
            index = None
        if index is None or isinstance(i, bool) or not -n <= index < n:
            raise ResnetlabError(
                f"no image {shown(i)} in this explanation of {n}: give an index from 0 to {n - 1}"
            )
        return index

    @any_script
    def save(self, out: str | os.PathLike) -> list[Path]:
        """Write an overlay PNG per image, ``maps.npz`` and, for several images, ``sheet.png``
        (for one, an earlier ``sheet.png`` in ``out`` is removed).

        ``maps.npz`` holds ``maps`` (N, H, W), ``sources``, ``predicted``, ``probability``
        (of the predicted class), ``target``, ``class_names``, ``method`` and ``layer``;
        it loads without pickle.

        Returns:
            The files written, overlays first.
        """
        out = Path(path_argument(out, "the folder to write the explanations into", reading=False))
        _check_destination(out, self.sources)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(out, e) from None
        written = []
        for i, name in enumerate(_file_names(self.sources)):
            path = out / f"{name}.png"
            overlay = self.overlay(i)
            atomic_write(path, lambda f, overlay=overlay: overlay.save(f, format="PNG"))
            written.append(path)
        self._save_maps(out / "maps.npz")
        written.append(out / "maps.npz")
        if len(self.sources) > 1:
            self._save_sheet(out / f"{SHEET_STEM}.png")
            written.append(out / f"{SHEET_STEM}.png")
        else:  # an earlier call's sheet would show other images than this maps.npz holds
            (out / f"{SHEET_STEM}.png").unlink(missing_ok=True)
        return written

    def _save_maps(self, path: Path) -> None:
        """Write the maps and predictions to ``path`` (``maps.npz``; ``save`` lists its keys)."""
        predicted = self.predicted
        atomic_write(
            path,
            lambda f: np.savez_compressed(
                f,
                maps=self.maps.numpy(),
                sources=np.array(self.sources),
                predicted=predicted.numpy(),
                probability=self.probabilities.gather(1, predicted[:, None])[:, 0].numpy(),
                target=self.targets.numpy(),
                class_names=np.array(self.class_names),
                method=np.array(self.method),
                layer=np.array(self.layer),
            ),
        )

    def _save_sheet(self, path: Path) -> None:
        """Write the contact sheet to ``path``: the overlays of up to ``SHEET_LIMIT`` images,
        tiled."""
        shown = _on_sheet(len(self.sources))
        more = (
            f" ({len(shown)} of {len(self.sources)}, evenly spread)"
            if len(shown) < len(self.sources)
            else ""
        )
        sheet = tile(
            [self.overlay(i, side=SHEET_SIDE, on_sheet=True) for i in shown],
            title=f"{self.method} at {self.layer}{more}",
        )
        atomic_write(path, lambda f: sheet.save(f, format="PNG"))


def _check_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ResnetlabError(
            f"{out} is a file; the explanations are written into a folder: name a new one"
        )
    if not out.exists() and out.suffix.lower() in IMAGE_EXTENSIONS | {".npz"}:
        # `--out cam.png` for one image made a folder named cam.png, holding the overlay
        raise ResnetlabError(
            f"{out} names a file; the explanations (an overlay per image, maps.npz and, for "
            f"several images, sheet.png) are written into a folder: name one, e.g. "
            f"{out.with_suffix('')}"
        )


def check_output_folder(out: str | os.PathLike, sources: Sequence[str] = ()) -> None:
    """Before the maps are computed: ``out`` is a folder, or one can be made there (it is
    made), that takes files and that the explanations of ``sources`` (the image files
    known so far) may be written into; else the one line ``save`` would give once the
    work is done."""
    out = Path(path_argument(out, "the folder to write the explanations into", reading=False))
    _check_folder(out)
    check_writable(out, out)
    _check_destination(out, sources)


def _check_destination(out: Path, sources: Sequence[str]) -> None:
    """Refuse to write the explanations of ``sources`` (an overlay named after each image,
    ``maps.npz``, ``sheet.png``) into ``out`` where they would replace or join files that
    are not earlier explanations: the images themselves, a run's files, one's photos."""
    _check_folder(out)
    # An overlay is named after its image: written into the images' own folder, it
    # would replace a PNG it explains.
    images = {Path(s).resolve() for s in sources if Path(s).is_file()}
    overlays = [out / f"{name}.png" for name in _file_names(sources)]
    targets = [*overlays, out / "maps.npz", out / f"{SHEET_STEM}.png"]
    clash = next((t for t in targets if t.resolve() in images), None)
    if clash is not None:
        raise ResnetlabError(
            f"{clash} is one of the images explained, which its overlay would replace; "
            "write the explanations into another folder"
        )
    # Beside the images (a class folder's photos/cats/1.jpg), the overlays would be read
    # as more of them by the next run on that folder.
    held = next((i for i in sorted(images) if i.parent == out.resolve()), None)
    if held is not None:
        raise ResnetlabError(
            f"{out} holds {held.name}, one of the images explained: the overlays would be "
            "read as images beside it next time; write the explanations into another folder"
        )
    # Into a run folder, a photo named curves.jpg would replace the run's curves.png.
    from ..engine.train import run_file_problem

    clash = next((t for t in targets if run_file_problem(t, t) is not None), None)
    if clash is not None:
        raise ResnetlabError(
            f"{clash} is a file of the run in {out}, which its overlay would replace; "
            f"write the explanations into another folder, e.g. {out / 'cams'}"
        )
    # A folder of one's photos, not of earlier explanations (which hold maps.npz): the
    # overlays would replace those of the same name, and a photo named sheet.png go.
    if out.is_dir() and not (out / "maps.npz").exists() and (photos := images_in(out)):
        raise ResnetlabError(
            f"{out} holds images ({photos}) and no maps.npz of earlier explanations: the "
            "overlays would join them, replacing any of the same name; write the "
            "explanations into a new or empty folder"
        )


def _file_names(sources: Sequence[str]) -> list[str]:
    """A file name per source: its stem; where two stems are the same, or the stem is the
    contact sheet's (a photo ``sheet.jpg``, whose overlay the sheet would replace), its
    folders' names in front, as many as tell it apart (a class folder's:
    ``photos/cat/1.jpg`` -> ``cat-1``; ``cat/2024-03-12/1.jpg`` -> ``cat-2024-03-12-1``),
    numbered where that still repeats (the same file twice) or is the sheet's."""
    paths = [Path(s) for s in sources]
    named = ["-".join(t) for t in _distinct_tails(paths, lambda p: p.stem, _is_sheet)]
    again = {s for s, n in Counter(named).items() if n > 1 or _is_sheet(s)}
    return [f"{i:04d}-{s}" if s in again else s for i, s in enumerate(named)]


def _distinct_tails(
    paths: Sequence[Path],
    name: Callable[[Path], str],
    clashes: Callable[[str], bool] = lambda name: False,
) -> list[tuple[str, ...]]:
    """Each path's ``name`` (its stem, its file name) with the fewest of its folders in
    front that tell it from other paths' (and from a name that ``clashes``): one folder
    more at a time, for the names that still repeat. A path given twice is not told apart."""
    folders = [[f for f in p.parent.parts if f not in (p.anchor, ".", "..")] for p in paths]
    tails = [(name(p),) for p in paths]
    for depth in range(1, max(map(len, folders), default=0) + 1):
        counts = Counter(t for t, _ in set(zip(tails, paths, strict=True)))  # paths, once
        again = {t for t, n in counts.items() if n > 1 or (len(t) == 1 and clashes(t[0]))}
        if not again:
            break
        tails = [
            (*f[-depth:], name(p)) if t in again else t
            for p, f, t in zip(paths, folders, tails, strict=True)
        ]
    return tails


def _is_sheet(stem: str) -> bool:
    # casefolded: on macOS and Windows, Sheet.png is the file sheet.png
    return stem.casefold() == SHEET_STEM


def _on_sheet(count: int) -> list[int]:
    """The images a contact sheet shows: all, or ``SHEET_LIMIT`` spread evenly over them (a
    folder's images come class by class: the first ones would all be of one class)."""
    if count <= SHEET_LIMIT:
        return list(range(count))
    return [round(i * (count - 1) / (SHEET_LIMIT - 1)) for i in range(SHEET_LIMIT)]


def _meta(model: nn.Module, side: int | None = None) -> ModelMeta:
    """The model's file metadata; for a model fresh from ``create_model``, what
    ``save_model`` would record of the weights it started from (``pretrained=``: their
    normalisation, resize, crop fraction and class names), else the defaults; at ``side``
    (the images' size) unless the model is built for one size."""
    meta = getattr(model, "meta", None)
    if meta is not None:
        return meta
    name = getattr(model, "model_name", None)
    if name is None:
        raise ResnetlabError("explain needs a model made by resnetlab (create_model, load_model)")
    pretrained = getattr(model, "pretrained", None)
    started = (getattr(pretrained, "preprocessing", None) or {}).get("input_size")
    size = getattr(model, "input_size", None) or side or started or model_info(name).input_size
    kwargs = dict(getattr(model, "model_kwargs", {}))
    if pretrained is None:
        return ModelMeta(name, kwargs, model.num_classes, size)
    names, _, mean, std, resize, fraction = usage_defaults(model, None, size, *[None] * 4)
    return ModelMeta(
        name,
        kwargs,
        model.num_classes,
        size,
        names,
        mean,
        std,
        resize=resize,
        crop_fraction=fraction,
    )


def _one_target(target: object) -> bool:
    """Whether ``target`` is one class for every image: a name or an index (np.int64 too,
    and a 0-d tensor, logits.argmax(), which is Iterable but not iterated)."""
    return (
        isinstance(target, int | str)
        or not isinstance(target, Iterable)
        or getattr(target, "ndim", None) == 0
    )


def _class_names(meta: ModelMeta) -> list[str]:
    """The model's class names; its class indices as text where it has none."""
    return meta.class_names or [str(i) for i in range(meta.num_classes)]


def _targets(target: int | str | Sequence[int | str] | None, names: list[str], n: int):
    """``target`` as class indices, one per image, or None for the predicted classes."""
    if target is None:
        return None
    items = [target] * n if _one_target(target) else list(target)
    if len(items) != n:
        raise ResnetlabError(f"{len(items)} target classes for {n} images")
    indices = []
    for item in items:
        if isinstance(item, str):
            if item not in names:  # in another case, where one class is so named (as eval),
                # or in the other Unicode form (a name pasted from macOS's Finder)
                key = unicodedata.normalize("NFC", item)
                alike = [name for name in names if unicodedata.normalize("NFC", name) == key]
                alike = alike or [
                    name
                    for name in names
                    if unicodedata.normalize("NFC", name).casefold() == key.casefold()
                ]
                if len(alike) > 1:  # One and one: the case that tells them apart is needed
                    raise ResnetlabError(
                        f"{item!r} is {' and '.join(map(repr, alike))} but for case, two "
                        "classes of the model: give one as it is written"
                    )
                if not alike:
                    raise ResnetlabError(f"no class {item!r}; {_classes_near(item, names)}")
                item = alike[0]
            item = names.index(item)
        else:
            try:
                item = operator.index(item)
            except TypeError:
                raise ResnetlabError(
                    f"a target class is a class name or index, got {shown(item)}"
                ) from None
        if not 0 <= item < len(names):
            raise ResnetlabError(f"class index {item} out of range for {len(names)} classes")
        indices.append(item)
    return torch.tensor(indices)


def _classes_near(item: str, names: list[str], listed: int = 12) -> str:
    """The classes to offer for a class ``item`` the model lacks: the close ones by
    spelling, and all of them where there are few (not ImageNet's thousand)."""
    close = near_class_names(item, names, 3, 0.6)
    near = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    if len(names) <= listed:
        return f"{near}the model's classes: {', '.join(names)}"
    return f"{near}the model has {len(names):,} classes ({', '.join(names[:5])}, ...)"


def _refuse_data_set_files(images: object) -> None:
    """Refuse an HDF5 data set file among the images (the course's test_signs.h5) with what
    explanations do take of a data set: the check of its maps on the images (``--check``),
    where predict's message points to ``eval``, which draws no maps."""
    named = [images] if isinstance(images, str | os.PathLike) else images
    if not isinstance(named, list | tuple):
        return
    for item in named:
        path = Path(item) if isinstance(item, str | os.PathLike) else None
        if path is not None and path.suffix.lower() in H5_SUFFIXES and path.is_file():
            check = (
                f"resnetlab explain MODEL_FILE {item} --check"
                if on_command_line()
                else f"resnetlab.explain.check_model(model, {os.fspath(item)!r})"
            )
            raise ResnetlabError(
                f"{item} is an HDF5 data set, not an image: explain draws maps of image files; "
                f"how well the maps point at what the model uses on its images is measured "
                f"with: {check}"
            )


def _read(model: nn.Module, images) -> tuple[ModelMeta, list[str], torch.Tensor]:
    """The model's metadata, and the images' names and uint8 (N, H, W, 3) pixels."""
    if (  # beside files and PIL images, an array is refused as such (fromarray)
        isinstance(images, list | tuple)
        and images
        and all(isinstance(i, np.ndarray | torch.Tensor) for i in images)
    ):
        stack = "torch.stack" if isinstance(images[0], torch.Tensor) else "np.stack"
        raise ResnetlabError(
            "explain takes pixels as one uint8 (N, H, W, 3) array, not a list of arrays: "
            f"give {stack}(images)"
        )
    if not isinstance(images, np.ndarray | torch.Tensor):
        _refuse_data_set_files(images)
        meta = _meta(model)
        paths, pixels = load_inputs(images, meta)
        return meta, [str(p) for p in paths], pixels
    if isinstance(images, np.ndarray):  # a flipped or rotated view (image[:, ::-1]), too
        images = np.ascontiguousarray(images)
    pixels = torch.as_tensor(images)
    pixels = pixels[None] if pixels.ndim == 3 else pixels
    meta = _meta(model, pixels.shape[1] if pixels.ndim == 4 else None)
    size = (meta.input_size, meta.input_size)
    if pixels.dtype != torch.uint8 or pixels.ndim != 4 or tuple(pixels.shape[1:]) != (*size, 3):
        # The course's X_test / 255: floats in [0, 1], which are not pixels. A torchvision
        # user's (C, H, W) tensors (ToTensor's) need their channels moved last as well.
        tensor = isinstance(images, torch.Tensor)
        scaled = "X.mul(255).round().byte()" if tensor else "(X * 255).round().astype('uint8')"
        channels_first = pixels.ndim == 4 and tuple(pixels.shape[1:]) == (3, *size)
        order = "(1, 2, 0)" if images.ndim == 3 else "(0, 2, 3, 1)"
        moved = f".{'permute' if tensor else 'transpose'}{order}" if channels_first else ""
        if pixels.is_floating_point():
            fix = f"; for floats in [0, 1] (the course's X / 255), give {scaled}{moved}"
            if channels_first:
                fix += "; a normalised (B, 3, H, W) batch goes to class_activation_maps"
        else:
            fix = f"; with the channels first, give X{moved}" if channels_first else ""
        raise ResnetlabError(
            f"images must be uint8 (N, {size[0]}, {size[1]}, 3) for this model, got "
            f"{images.dtype} {tuple(images.shape)}; read_input decodes and resizes a file{fix}"
        )
    if not len(pixels):
        raise ResnetlabError(f"no images given: the pixels are {tuple(pixels.shape)}")
    return meta, [f"image {i}" for i in range(len(pixels))], pixels


def explain(
    model: nn.Module | str | os.PathLike,
    images: Inputs | np.ndarray | torch.Tensor,
    *,
    method: str = "gradcam",
    target: int | str | Sequence[int | str] | None = None,
    layer: str | None = None,
    device: str = "auto",
    batch_size: int = 32,
) -> Explanation:
    """Class activation maps of images, for the predicted class or a chosen one.

    Args:
        model: a model file written by resnetlab, or a model (``load_model``,
            ``create_model``).
        images: image files, folders and PIL images, decoded and resized as ``predict``
            does; or
            uint8 (N, H, W, 3) pixels at the model's input size (one image: (H, W, 3)),
            e.g. from ``resnetlab.engine.predict.read_input`` (a model fresh from
            ``create_model``, not built for one size, takes any square size).
        method: ``gradcam``, ``gradcam++``, ``layercam`` or ``scorecam``.
        target: the class to explain (name or index), one for all images or one each;
            default each image's predicted class.
        layer: the module whose feature map is weighed (``"layer4"``, ``"layer3.1"``...);
            default the last stage.
        device: ``auto``, ``cpu``, ``cuda``...
        batch_size: images per pass.

    Returns:
        The maps (the images' size, in [0, 1]), images, probabilities and classes.
    """
    batch_size = count_argument(batch_size, option("batch_size"))
    device_ = resolve_device(device)  # checked for a loaded model too, as predict does
    if not isinstance(model, nn.Module):
        model = load_model(model, device=device_)
    else:  # on the device named (auto: where it is), in float32
        model = model_on(model, device_ if device != "auto" else None)
    check_method(method)  # a misspelt method or layer said before a folder is decoded
    if layer is not None:
        find_layer(model, layer)
    if target is not None and _one_target(target):  # a misspelt --class, likewise
        _targets(target, _class_names(_meta(model)), 1)
    meta, sources, pixels = _read(model, images)
    names = _class_names(meta)
    targets = _targets(target, names, len(pixels))
    device_ = next(model.parameters()).device
    loader = model_batches(pixels, meta, device=device_, batch_size=batch_size)
    maps, probs, explained = [], [], []
    for start, (x, _) in zip(range(0, len(pixels), batch_size), loader, strict=True):
        part = None if targets is None else targets[start : start + len(x)].to(device_)
        result = class_activation_maps(model, x, method=method, targets=part, layer=layer)
        maps.append(result.maps.cpu())
        probs.append(result.logits.softmax(1).cpu())
        explained.append(result.targets.cpu())
    note = coarse_map_note(model, result.layer, result.grid, pixels.shape[1])
    return Explanation(
        sources=sources,
        images=pixels,
        maps=torch.cat(maps),
        probabilities=torch.cat(probs),
        targets=torch.cat(explained),
        class_names=names,
        method=method,
        layer=result.layer,
        notes=[note] if note else [],
    )
