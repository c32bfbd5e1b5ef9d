"""Model files: one ``.safetensors`` file that can rebuild and use its own model.

The weights are the model's ``state_dict``; the safetensors metadata holds one JSON entry,
``resnetlab``, with what is needed to rebuild the model (registry name and options) and to
use it (class names, input size, normalisation) plus a short training summary. Nothing is
unpickled on load, and the metadata is checked against a schema (``meta_problem``) before
anything is built from it: a damaged or edited file is a one-line error, never a traceback
or an attempt to allocate a classifier of a billion classes.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as serialize
from torch import nn

from ..errors import (
    ResnetlabError,
    count_argument,
    empty_problem,
    finite_number,
    folder_problem,
    near_name,
    option,
    path_argument,
    shown,
)
from ..options import (
    CROP_FRACTIONS,
    INPUT_SIZES,
    MAX_CLASSES,
    RESIZE_MODES,
    is_crop_fraction,
    is_input_size,
)
from ..storage import (
    WriteError,
    atomic_write,
    is_special,
    missing_folders,
    permission_problem,
    removed_on_failure,
    strict_json,
    write_error,
)
from .registry import built_options, create_model, list_models, model_info

FORMAT = "resnetlab.model/1"
META_KEY = "resnetlab"

MIN_STD = 1e-6  # split_stats' floor, for a channel that never changes
SHOWN_CLASSES = 5  # the class names ModelMeta's repr names
# The training record's keys (engine.train's _training_info) that measure the weights
# themselves: a loaded model saved again after its weights changed leaves them out.
WEIGHT_SCORES = ("best_val_acc", "best_train_acc", "best_epoch", "best_metric")


@dataclass
class ModelMeta:
    """What a model file says about its model.

    Images are fed to the model as ``(pixels / 255 - mean) / std`` per RGB channel, at
    ``input_size`` x ``input_size``, reached as ``resize`` says: ``squash`` (resized to it,
    whatever the aspect ratio) or ``crop`` (shorter side to it, then the centre cut out).
    Files written before ``resize`` existed lack the key and mean ``squash``. With a
    ``crop_fraction`` below 1 the image is first resized to ``input_size / crop_fraction``
    and the centre ``input_size`` kept (ImageNet evaluation's 256 for 224: 0.875); files
    written before it existed lack the key and mean 1 (``data.decode.resize_plan``).
    """

    model: str
    model_kwargs: dict[str, Any]
    num_classes: int
    input_size: int
    class_names: list[str] | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    training: dict[str, Any] = field(default_factory=dict)
    resize: str = "squash"
    crop_fraction: float = 1.0
    format: str = FORMAT

    def __post_init__(self) -> None:
        for key in ("mean", "std"):  # their ranges are the schema's (meta_problem)
            value = getattr(self, key)
            try:
                setattr(self, key, tuple(float(v) for v in value))
            except (TypeError, ValueError):  # a single number, or text
                raise ResnetlabError(
                    f"{key} must be three numbers, one per RGB channel, got {shown(value)}"
                ) from None
        if self.resize not in RESIZE_MODES:
            raise ResnetlabError(f"unknown resize {self.resize!r} in the model file's metadata")
        if not is_crop_fraction(self.crop_fraction):
            raise ResnetlabError(
                f"crop_fraction must be {CROP_FRACTIONS}, got {shown(self.crop_fraction)}"
            )
        self.crop_fraction = float(self.crop_fraction)
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ResnetlabError(
                f"{len(self.class_names)} class names for a model with {self.num_classes} outputs"
            )
        repeated = [n for n, k in Counter(self.class_names or ()).items() if k > 1]
        if repeated:  # predictions by name, and eval's matching, need one class a name
            raise ResnetlabError(
                f"class names repeated: {', '.join(map(str, repeated[:5]))}; give each class "
                "a name of its own"
            )

    def __repr__(self) -> str:
        # One line: ImageNet's 1,000 class names and a run's training record are attributes
        # to look at, not to have printed whole.
        names = self.class_names
        if names is not None and len(names) > SHOWN_CLASSES:
            names = f"[{', '.join(map(repr, names[:SHOWN_CLASSES]))}, ... {len(names)} in all]"
        kwargs = f"model_kwargs={self.model_kwargs!r}, " if self.model_kwargs else ""
        return (
            f"ModelMeta(model={self.model!r}, {kwargs}num_classes={self.num_classes}, "
            f"input_size={self.input_size}, resize={self.resize!r}, "
            f"{f'crop_fraction={self.crop_fraction}, ' if self.crop_fraction != 1 else ''}"
            f"class_names={names}, "
            f"mean={self.mean}, std={self.std}, training=<{len(self.training)} keys>)"
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        """Parse and check metadata (``meta_problem``); keys it does not know are ignored.

        Raises:
            ValueError: not JSON, or a value the schema refuses.
        """
        data = json.loads(text)
        problem = meta_problem(data)
        if problem:
            raise ValueError(problem)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def case_matches(names: list[str], known: list[str]) -> dict[str, str]:
    """``{name: model class}`` for the names the model does not have as they are but has in
    one other case (a folder ``circles`` for the class ``Circles``), when that class is not
    also named as it is: how ``eval`` matches a data set's classes to a model's, and
    ``--pretrained`` a classifier's to the data's."""
    folded: dict[str, list[str]] = {}
    for k in known:
        folded.setdefault(k.casefold(), []).append(k)
    out = {}
    for name in names:
        if name in known:
            continue
        match = folded.get(name.casefold(), [])
        if len(match) == 1 and match[0] not in names:
            out[name] = match[0]
    return out


def near_class_names(name: str, names: list[str], n: int, cutoff: float) -> list[str]:
    """Up to ``n`` of ``names`` spelled like ``name`` (difflib's ratio at least ``cutoff``),
    in any letter case, as classes are matched (``case_matches``): ``Ships`` is near
    ``ship``. Of names alike but for case, the first is offered."""
    folded: dict[str, str] = {}
    for known in names:
        folded.setdefault(known.casefold(), known)
    close = difflib.get_close_matches(name.casefold(), list(folded), n=n, cutoff=cutoff)
    return [folded[c] for c in close]


def near_classes(unknown: list[str], known: list[str]) -> dict[str, str]:
    """Each of the class names ``unknown`` that is spelled like one of ``known``
    (``near_class_names``), with that one: ``{"ships": "ship"}``, a folder misnamed."""
    return {name: close[0] for name in unknown if (close := near_class_names(name, known, 1, 0.8))}


def did_you_mean(near: dict[str, str], unknown: list[str]) -> str | None:
    """The question that hints at ``near`` (``near_classes`` of ``unknown``): ``did you mean
    ship?`` where one name is unknown, else ``did you mean ship for ships, ...?``; None
    where none is near."""
    if len(near) == 1 and len(unknown) == 1:
        return f"did you mean {next(iter(near.values()))}?"
    if near:
        return f"did you mean {', '.join(f'{b} for {a}' for a, b in near.items())}?"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_input_size(value: Any) -> bool:
    return _is_int(value) and is_input_size(value)


def _is_json_option(value: Any) -> bool:
    """A constructor option as JSON gives it: a scalar, or a list of scalars."""
    scalar = (type(None), bool, int, float, str)
    if isinstance(value, list):
        return all(isinstance(v, scalar) for v in value)
    return isinstance(value, scalar) and (not isinstance(value, float) or math.isfinite(value))


def option_problem(kwargs: dict[str, Any]) -> str | None:
    """The first constructor option a model file cannot hold (one that is no JSON value,
    such as a module class for ``act_layer``), in words; None when all fit."""
    for key, value in kwargs.items():  # a tuple is written as a list, which rebuilds it
        if not _is_json_option(list(value) if isinstance(value, tuple) else value):
            return (
                f"option {key}={value!r} is no JSON value (a number, string, true/false or a "
                "list of them), which is all a model file holds"
            )
    return None


def _triple(value: Any, low: float, high: float) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(finite_number(v) and low <= v <= high for v in value)
    )


def meta_problem(data: Any) -> str | None:
    """What is wrong with a model file's metadata (parsed JSON), or None if it fits the schema.

    The schema: ``model`` a name (whether this version has it, building the model says);
    ``model_kwargs`` an object of constructor options (JSON scalars or lists of them; not
    ``num_classes``, ``name`` nor ``pretrained``); ``num_classes`` an integer
    in 1..``MAX_CLASSES``; ``input_size`` one the models take (``options.is_input_size``)
    (also as a constructor option); ``class_names`` null or ``num_classes`` strings; ``mean``
    three numbers in [0, 1]; ``std`` three numbers in [``MIN_STD``, 1000]; ``resize``
    ``squash`` or ``crop``; ``crop_fraction`` a number from 0.5 to 1; ``training`` an object;
    ``format`` ``FORMAT``. Other keys are allowed and ignored, so newer files with more to
    say still load.
    """
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    missing = [k for k in ("model", "num_classes", "input_size") if k not in data]
    if missing:
        return f"no {', '.join(missing)}"
    fmt, name = data.get("format", FORMAT), data["model"]
    kwargs = data.get("model_kwargs", {})
    num_classes, input_size = data["num_classes"], data["input_size"]
    names = data.get("class_names")
    named = isinstance(names, list) and all(isinstance(n, str) for n in names)
    repeated = [n for n, k in Counter(names).items() if k > 1] if named else []
    checks = (
        (fmt == FORMAT, f"format {fmt!r}, expected {FORMAT!r}"),
        (isinstance(name, str) and bool(name), f"model {name!r} is not a model name"),
        (isinstance(kwargs, dict), f"model_kwargs {kwargs!r} is not an object"),
        (
            isinstance(kwargs, dict) and all(_is_json_option(v) for v in kwargs.values()),
            f"model_kwargs {kwargs!r} holds values no constructor option takes",
        ),
        (
            isinstance(kwargs, dict) and "num_classes" not in kwargs,
            "model_kwargs sets num_classes, which belongs in num_classes",
        ),
        (
            isinstance(kwargs, dict) and not {"name", "pretrained"} & kwargs.keys(),
            "model_kwargs sets the model's name or pretrained weights, which no file holds",
        ),
        (
            _is_int(num_classes) and 1 <= num_classes <= MAX_CLASSES,
            f"num_classes {num_classes!r} is not an integer in 1..{MAX_CLASSES:,}",
        ),
        (
            _is_input_size(input_size),
            f"input_size {input_size!r} is not a whole number {INPUT_SIZES}",
        ),
        (
            not isinstance(kwargs, dict)
            or "input_size" not in kwargs
            or _is_input_size(kwargs["input_size"]),
            f"model_kwargs input_size is not a whole number {INPUT_SIZES}",
        ),
        (names is None or named, "class_names is not a list of strings"),
        (
            not isinstance(names, list) or len(names) == num_classes,
            f"{len(names) if isinstance(names, list) else 0} class names for "
            f"{num_classes!r} classes",
        ),
        (not repeated, f"class names repeated: {', '.join(repeated[:5])}"),
        (_triple(data.get("mean", (0, 0, 0)), 0.0, 1.0), "mean is not three numbers in [0, 1]"),
        (
            _triple(data.get("std", (1, 1, 1)), MIN_STD, 1000.0),
            f"std is not three numbers in [{MIN_STD:g}, 1000]",
        ),
        (
            data.get("resize", "squash") in RESIZE_MODES,
            f"resize {data.get('resize')!r} is neither squash nor crop",
        ),
        (
            is_crop_fraction(data.get("crop_fraction", 1.0)),
            f"crop_fraction {data.get('crop_fraction')!r} is not {CROP_FRACTIONS}",
        ),
        (isinstance(data.get("training", {}), dict), "training is not an object"),
    )
    return next((message for ok, message in checks if not ok), None)


def newer_format_problem(path: str | os.PathLike, text: str) -> str | None:
    """The message for a file whose metadata (``text``) says a newer resnetlab wrote it
    (``resnetlab.model/N`` past ``FORMAT``), which no saving again here mends; else None."""
    from .. import __version__

    kind, _, current = FORMAT.rpartition("/")
    try:
        fmt = json.loads(text).get("format")
        given, _, version = fmt.rpartition("/")
        newer = given == kind and int(version) > int(current)
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None
    if not newer:
        return None
    return (
        f"{path} was written by a newer resnetlab (format {fmt!r}; resnetlab {__version__} "
        f"reads {FORMAT!r}); upgrade resnetlab to load it"
    )


def first_nonfinite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, or None."""
    return next((k for k, v in tensors.items() if v.is_floating_point() and not _finite(v)), None)


# NumPy's check of a CPU tensor, a view of its memory, takes a tenth of the time of
# torch's isfinite().all() (0.02 s for a ResNet50's 24 million values on 2 cores, not 0.25 s),
# which every save, load and conversion of a model pays.
_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def _finite(tensor: torch.Tensor) -> bool:
    if tensor.device.type == "cpu" and tensor.dtype in _NUMPY_FLOATS:
        return bool(np.isfinite(tensor.detach().resolve_neg().numpy()).all())
    return bool(tensor.isfinite().all())


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    class_names: list[str] | None = None,
    input_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    training: dict[str, Any] | None = None,
    resize: str | None = None,
    crop_fraction: float | None = None,
) -> ModelMeta:
    """Write ``model`` (made by ``create_model``) and how to use it to one safetensors file.

    Args:
        model: the model; a ``torch.compile`` or DistributedDataParallel wrapper is unwrapped.
        path: the file to write (its folder is made if missing); ``load_model`` reads it.
        class_names: one name per output, for ``predict``'s answers.
        input_size: the image side it takes; default: the model's own, else the size the
            pretrained weights it started from were trained at (``model.pretrained``), else
            the registry's.
        mean, std: per RGB channel, on pixels in [0, 1]: the model sees
            ``(pixels / 255 - mean) / std``.
        training: anything to keep about how it was trained (JSON values); default: the
            record of the file the model came from (below), else none.
        resize: how images reach ``input_size``: ``crop`` (shorter side, then the centre,
            what ``train`` records by default) or ``squash`` (the whole image).
        crop_fraction: the share of the resized image's side kept around its centre: 1
            (the default) resizes straight to ``input_size``; ImageNet weights' 0.875
            resizes to 256 for 224, then keeps the centre (``data.decode.resize_plan``).

    Returns:
        The metadata written, as ``load_model`` gives it back in ``model.meta``.

    A model that came from a model file (``load_model``, or ``train(...).model``) keeps
    that file's class names (while its class count is the same), input size, ``mean``,
    ``std``, ``resize`` and ``crop_fraction`` where they are not given, and its training
    record: whole while the weights are the ones the file held; once they changed (trained
    further, a new classifier), without the scores measured on the file's weights
    (``WEIGHT_SCORES``) and with ``weights_changed: true``. Otherwise they default to those
    of the pretrained weights the model started from (``model.pretrained``; class names
    where its classifier was kept), else ``mean`` and ``std`` to 0 and 1 (``pixels / 255``),
    ``resize`` to ``crop`` and ``crop_fraction`` to 1. The file is written to a
    temporary name and renamed, so a crash never leaves a torn file. A model whose weights
    hold NaN or inf, or whose metadata the schema refuses (``meta_problem``), is not written.

    Raises:
        ResnetlabError: non-finite weights or metadata out of range; ``WriteError`` when
            the file cannot be written (nothing is left behind).
    """
    model, path = _savable_model(model, path)
    if resize is not None and resize not in RESIZE_MODES:  # not "in the file's metadata"
        raise ResnetlabError(f"unknown resize {shown(resize)}; choose {', '.join(RESIZE_MODES)}")
    if crop_fraction is not None and not is_crop_fraction(crop_fraction):
        raise ResnetlabError(f"crop_fraction must be {CROP_FRACTIONS}, got {shown(crop_fraction)}")
    class_names, input_size, mean, std, resize, crop_fraction = usage_defaults(
        model, _class_names_argument(class_names), input_size, mean, std, resize, crop_fraction
    )
    tensors = _weights_to_save(model, path)
    training = _training_record(
        path, _loaded_record(model, tensors) if training is None else training
    )
    if input_size is None:  # the model's own, else that of the weights it started from
        pretrained = getattr(model, "pretrained", None)
        started = (getattr(pretrained, "preprocessing", None) or {}).get("input_size")
        input_size = (
            getattr(model, "input_size", None) or started or model_info(model.model_name).input_size
        )
    meta = ModelMeta(
        model=model.model_name,
        model_kwargs=dict(getattr(model, "model_kwargs", {})),
        num_classes=model.num_classes,
        input_size=count_argument(input_size, "input_size"),  # not '32' or 32.5 taken as 32
        class_names=list(class_names) if class_names is not None else None,
        mean=mean,
        std=std,
        training=training,
        resize=resize,
        crop_fraction=crop_fraction,
    )
    problem = meta_problem(json.loads(meta.to_json()))
    if problem:
        raise ResnetlabError(f"{path}: not written: its metadata would be invalid ({problem})")
    _check_weights_fit(path, meta, tensors)
    _check_input_size(path, meta, tensors)
    with removed_on_failure(missing_folders(path.parent), WriteError):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where a folder is needed, a folder not ours to write
            raise write_error(path, e) from None
        # Serialised in memory and written as a plain file: the usual permissions
        # (safetensors creates files readable by the owner only) and a full disk reported
        # as OSError.
        atomic_write(path, serialize(tensors, metadata={META_KEY: meta.to_json()}))
    return meta


def _savable_model(model: nn.Module, path: str | os.PathLike) -> tuple[nn.Module, Path]:
    """``model`` out of its torch.compile or DistributedDataParallel wrapper, and ``path``
    as a Path, refused unless a model file can hold the model (made by ``create_model``,
    with a classifier, from options ``load_model`` can rebuild it from) at ``path``
    (``_model_file_to_write``)."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    name = getattr(model, "model_name", None)
    if name is None:
        raise ResnetlabError("save_model needs a model made by resnetlab.create_model")
    path = _model_file_to_write(path)
    if model.num_classes == 0:  # timm's feature extractor: no classifier for predict to use
        raise ResnetlabError(
            f"{path}: not written: {name} has no classifier (num_classes=0), and a model file "
            "holds a classifier; give it one first: model.reset_classifier(N)"
        )
    if problem := option_problem(dict(getattr(model, "model_kwargs", {}))):
        raise ResnetlabError(
            f"{path}: not written: {name}'s {problem}, so load_model could not rebuild it"
        )
    return model, path


def _weights_to_save(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """``model``'s weights and buffers on the CPU, refused when any has no values (the
    meta device) or holds NaN or inf."""
    state = model.state_dict()
    if empty := next((k for k, v in state.items() if v.is_meta), None):  # no values to copy
        raise ResnetlabError(
            f"{path}: not written: the model's {empty} is on the meta device, which holds "
            "shapes and no values; build the model on a real device, or give it weights "
            "(model.to_empty(device='cpu'), then load_state_dict)"
        )
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    if (bad := first_nonfinite(tensors)) is not None:
        raise ResnetlabError(f"{path}: not written: the model's {bad} holds NaN or inf")
    return tensors


def _check_input_size(path: Path, meta: ModelMeta, tensors: dict[str, torch.Tensor]) -> None:
    """``save_model``'s refusal of an ``input_size`` that the model, built for another one,
    cannot take: the course's Keras model's classifier takes the features of the size it
    was built for, and predict, which resizes images to the file's size, would fail on
    every image."""
    built_for = meta.model_kwargs.get("input_size", model_info(meta.model).input_size)
    if not model_info(meta.model).takes_input_size or meta.input_size == built_for:
        return
    with torch.device("meta"):
        kwargs = {**meta.model_kwargs, "input_size": meta.input_size}
        sized = create_model(meta.model, num_classes=meta.num_classes, **kwargs)
    expected = {k: tuple(v.shape) for k, v in sized.state_dict().items()}
    if shapes_problem(expected, {k: tuple(v.shape) for k, v in tensors.items()}):
        raise ResnetlabError(
            f"{path}: not written: {meta.model} is built for {built_for}x{built_for} images "
            f"(its classifier takes the features of that size), and "
            f"{option('input_size', meta.input_size)} would have predict feed it "
            f"{meta.input_size}x{meta.input_size} ones; leave {option('input_size')} out"
        )


def _check_weights_fit(path: Path, meta: ModelMeta, tensors: dict[str, torch.Tensor]) -> None:
    """``save_model``'s refusal of weights that are not those of the model ``meta`` names: a
    layer replaced by hand (``model.fc = nn.Linear(512, 5)``) leaves the name and options
    describing another model, whose file load_model would refuse."""
    expected = {k: tuple(v.shape) for k, v in model_skeleton(path, meta).state_dict().items()}
    if problem := shapes_problem(expected, {k: tuple(v.shape) for k, v in tensors.items()}):
        fix = (
            "; change the classes with model.reset_classifier(N) rather than a new layer"
            if "fc." in problem
            else ""
        )
        raise ResnetlabError(
            f"{path}: not written: its weights are not those of {meta.model} with "
            f"num_classes={meta.num_classes}, which load_model would rebuild ({problem}){fix}"
        )


def class_name_problem(name: object) -> str | None:
    """What makes ``name`` no class name for a model file to write, or None: not a string,
    empty or blank, or holding a control character (a newline would split the line
    ``predict`` prints for it)."""
    if not isinstance(name, str):
        return "is not text"
    if empty_problem(name):
        return "is empty"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "holds a control character"
    return None


def _class_names_argument(class_names: object) -> list[str] | None:
    """``save_model``'s ``class_names`` as a list, refused in one line naming the first bad
    name's position (``class_name_problem``). Files already written are not held to this:
    only names given here are."""
    if class_names is None:
        return None
    if isinstance(class_names, str):  # a string is a sequence, of its letters
        raise ResnetlabError(
            f"class_names must be a list of names, got the string {class_names!r}; give [name, ...]"
        )
    try:
        names = list(class_names)
    except TypeError:
        raise ResnetlabError(
            f"class_names must be a list of names, got {shown(class_names)}; give [name, ...]"
        ) from None
    for i, name in enumerate(names):
        if problem := class_name_problem(name):
            fix = (
                "give the names as strings ([str(n) for n in names])"
                if not isinstance(name, str)
                else "give each class a name of one line"
            )
            raise ResnetlabError(f"class_names[{i}] {shown(name)} {problem}; {fix}")
    return [str(name) for name in names]  # NumPy's np.str_ too: plain text, as read back


def _model_file_to_write(path: str | os.PathLike) -> Path:
    """``save_model``'s ``path`` as a Path, refused in one line where it names a folder or
    another format's file (``model_path_problem``)."""
    path = path_argument(path, "the model file to write", reading=False)
    if problem := folder_problem(path, "model.safetensors"):
        raise ResnetlabError(problem)
    path = Path(path)
    if problem := model_path_problem(path):
        raise ResnetlabError(f"{path}: not written: {problem}")
    return path


def usage_defaults(
    model: nn.Module,
    class_names: list[str] | None,
    input_size: int | None,
    mean: tuple[float, float, float] | None,
    std: tuple[float, float, float] | None,
    resize: str | None,
    crop_fraction: float | None,
) -> tuple[
    list[str] | None,
    int | None,
    tuple[float, float, float],
    tuple[float, float, float],
    str,
    float,
]:
    """``save_model``'s class names, input size, mean, std, resize and crop fraction, each
    as given, else as the model file the model was loaded from says, else as the pretrained
    weights it started from say (``model.pretrained``), else ``pixels / 255``, ``crop`` and
    1. The input size stays None unless given or loaded: ``save_model`` decides it last."""
    pretrained = getattr(model, "pretrained", None)
    loaded = getattr(model, "meta", None)  # load_model's: saved again, its images stay the same
    if isinstance(loaded, ModelMeta):
        if class_names is None and loaded.num_classes == model.num_classes:
            class_names = loaded.class_names
        if mean is None and std is None:
            mean, std = loaded.mean, loaded.std
        if input_size is None:
            input_size = getattr(model, "input_size", None) or loaded.input_size
        if resize is None:
            resize = loaded.resize
        if crop_fraction is None:
            crop_fraction = loaded.crop_fraction
    if pretrained is not None:  # what the weights it started from say, where kept
        if mean is None and std is None and pretrained.mean is not None:
            mean, std = pretrained.mean, pretrained.std
        names = pretrained.class_names
        if class_names is None and names and len(names) == model.num_classes:
            class_names = names
        resize = resize or pretrained.resize
        if crop_fraction is None:
            crop_fraction = pretrained.crop_fraction
    mean = (0.0, 0.0, 0.0) if mean is None else mean
    std = (1.0, 1.0, 1.0) if std is None else std
    resize = "crop" if resize is None else resize
    crop_fraction = 1.0 if crop_fraction is None else float(crop_fraction)
    return class_names, input_size, mean, std, resize, crop_fraction


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and values, whatever device or memory
    layout (channels_last) holds them: whether two sets of weights are the same."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def attach_meta(model: nn.Module, meta: ModelMeta) -> nn.Module:
    """``model`` with its file's metadata as ``model.meta``, and a digest of the weights it
    has now: ``save_model`` keeps the file's training record whole while they are these."""
    model.meta = meta
    model._meta_weights = weights_digest(model.state_dict())
    return model


def _loaded_record(model: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The training record of the file a model came from (``attach_meta``): whole while its
    weights are the ones it came with; once they changed, without the scores that measured
    those (``WEIGHT_SCORES``) and saying so. None for a model that came from no file."""
    loaded = getattr(model, "meta", None)
    if not isinstance(loaded, ModelMeta) or not loaded.training:
        return None
    if getattr(model, "_meta_weights", None) == weights_digest(tensors):
        return loaded.training
    kept = {k: v for k, v in loaded.training.items() if k not in WEIGHT_SCORES}
    return {**kept, "weights_changed": True}


def _training_record(path: Path, training: object) -> dict[str, Any]:
    """``save_model``'s ``training`` as the JSON the file holds: NumPy and PyTorch numbers
    (an accuracy computed as a tensor) as the numbers they hold, NaN and infinities as null
    (as a run's summary.json has them: JSON has no NaN); one line for a value JSON has no
    form for (json's TypeError), or a record that is no dict."""
    if training is None:
        return {}
    if not isinstance(training, dict):
        raise ResnetlabError(
            f"training must be a dict of what to keep ({{'epochs': 10, ...}}), got "
            f"{type(training).__name__}"
        )

    def plain(value: object) -> object:
        if isinstance(value, np.generic | np.ndarray | torch.Tensor):
            return value.tolist()
        raise TypeError(type(value).__name__)

    try:
        return strict_json(json.loads(json.dumps(training, default=plain)))
    except TypeError as e:
        raise ResnetlabError(
            f"{path}: not written: training holds a {e}, which a model file cannot hold "
            "(numbers, text, true/false, and lists and dicts of them)"
        ) from None


def empty_file_problem(path: Path, fix: str = "copy it again") -> str:
    """The message for a model file of 0 bytes."""
    return f"{path} is empty (0 bytes), as a copy or download that failed leaves it; {fix}"


def cut_short(path: Path) -> str | None:
    """What is wrong with a safetensors file that is empty or ends before its header says it
    does (a copy or download that failed or stopped), or None when it does not."""
    size, (needed, known) = path.stat().st_size, _safetensors_size(path)
    if size == 0:
        return empty_file_problem(path)
    if needed <= size:
        return None
    of = f"{needed:,}" if known else f"at least {needed:,}"
    return (
        f"{path} is cut short ({size:,} of {of} bytes), as a copy or download that stopped "
        "leaves it; copy it again"
    )


def _safetensors_size(path: Path) -> tuple[int, bool]:
    """The size in bytes that a safetensors file's header says the file has (8 bytes of
    header length, the JSON header, the tensors' bytes) and whether that is all of it: when
    the file ends inside its header, only the header's size is known. (0, False) when the
    file does not start as a safetensors file."""
    try:
        with path.open("rb") as f:
            length = int.from_bytes(f.read(8), "little")
            text = f.read(min(length, 100_000_000))
        if not text.startswith(b'{"'):
            return 0, False
        if len(text) < length:
            return 8 + length, False
        header = json.loads(text)
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        return 8 + length + max(ends, default=0), True
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return 0, False


# Suffixes of the files a MODEL_OR_FILE argument may name: model files, and the exports,
# weights and Keras files that are mistaken for them (and are then named as what they are).
FILE_SUFFIXES = (".safetensors", ".onnx", ".pt2", ".pt", ".pth", ".torchscript", ".h5", ".keras")


def model_path_problem(path: str | os.PathLike) -> str | None:
    """Why a model file may not be written to ``path``, with the path to write instead, or
    None: its suffix is ``.safetensors`` (any case) or there is none. Another format's
    (``.pt``, ``.onnx``, ``.h5``...) would be read back as that format, and fail; an unknown
    one (``.bin``) would hide what the file is."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not suffix or suffix == ".safetensors":
        return None
    # model.safetensors.pt is model.safetensors with one suffix too many; a word (.bin,
    # .ckpt) is a format's suffix, to replace; anything else is a part of the name (.v2).
    if Path(path.stem).suffix.lower() == ".safetensors":
        fixed = path.with_suffix("")
    elif suffix in FILE_SUFFIXES or suffix[1:].isalpha():
        fixed = path.with_suffix(".safetensors")
    else:
        fixed = Path(f"{path}.safetensors")
    if suffix in FILE_SUFFIXES:
        return (
            f"a model file is a .safetensors file, and {suffix} names another format "
            f"(torch.save's, an export's or Keras's); write {fixed}"
        )
    return f"a model file is a .safetensors file, not {suffix}; write {fixed}"


def names_a_file(value: str) -> bool:
    """Whether a model argument that takes a registered name or a model file (``summary``,
    ``bench --model``) names a file: not a registered name, and a path that exists, or one
    with a folder or a model file's suffix, so that a mistyped path is reported as a
    missing file rather than as an unknown model."""
    if value in list_models():
        return False
    return (
        os.path.exists(value)
        or "/" in value
        or os.sep in value
        or (Path(value).suffix.lower() in FILE_SUFFIXES)
    )


# A Keras 3 model saved as a folder: model.save(folder, zipped=False), the Hugging Face Hub's.
KERAS_FOLDER_FILES = ("config.json", "model.weights.h5")


def is_keras_folder(path: Path) -> bool:
    """Whether ``path`` is a Keras 3 model saved as a folder (``zipped=False``)."""
    return path.is_dir() and all((path / name).is_file() for name in KERAS_FOLDER_FILES)


def _refuse_tensorflow_format(path: Path) -> None:
    """Refuse a TensorFlow SavedModel or checkpoint given as a model file, with the way to
    one (it was "a folder, not a model file"). Asked only of what is no safetensors file:
    the Keras module, h5py with it, is not imported to load a model."""
    from ..convert.keras import tensorflow_format_problem  # (convert imports this module)

    if problem := tensorflow_format_problem(path):
        raise ResnetlabError(
            f"{problem} once converted: resnetlab convert keras model.h5 model.safetensors"
        )


def read_model_meta(path: str | os.PathLike) -> ModelMeta:
    """The metadata of a model file, without reading its weights."""
    path = Path(path_argument(path, "the model file"))
    _refuse_if_no_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ResnetlabError(_not_safetensors_problem(path, e)) from None
    if META_KEY not in metadata:
        raise ResnetlabError(
            f"{path} has no resnetlab metadata: it holds bare weights, which train --pretrained "
            "takes (or, in Python, create_model(...).load_state_dict)"
        )
    try:
        meta = ModelMeta.from_json(metadata[META_KEY])
    except (ValueError, TypeError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise ResnetlabError(
            newer_format_problem(path, metadata[META_KEY])
            or f"{path} has invalid resnetlab metadata ({e}); the file is damaged or was "
            "edited: save the model again"
        ) from None
    return dataclasses.replace(meta, model_kwargs=built_options(meta.model_kwargs, str(path)))


_RUN_FILES = "a run folder's model files are best.safetensors and last.safetensors"


def _refuse_if_no_file(path: Path) -> None:
    """``read_model_meta``'s refusal of a ``path`` that is no file to read: a folder (a run
    folder, a Keras or TensorFlow model), a pipe, or nothing (a dead link, a near name)."""
    if path.is_dir():
        if (path / "best.safetensors").is_file():
            raise ResnetlabError(f"{path} is a run folder, not a model file; {_run_models(path)}")
        if is_keras_folder(path):
            raise ResnetlabError(
                f"{path} is a Keras model (a folder, model.save(..., zipped=False)), not a model "
                f"file; a Keras model converts to one: resnetlab convert keras {path} "
                f"{path.name}.safetensors"
            )
        _refuse_tensorflow_format(path)
        raise ResnetlabError(f"{path} is a folder, not a model file; {_RUN_FILES}")
    if is_special(path):  # `<(cat m.safetensors)`: a pipe, which safetensors cannot map
        raise ResnetlabError(
            f"{path} is a pipe or a device, not a model file: save the model to a file and "
            "give its path"
        )
    if not path.is_file():
        _refuse_tensorflow_format(path)  # a checkpoint's prefix, which names no file
        from ..data.decode import dead_link  # (data imports this module)

        if why := dead_link(path):  # listed by ls, so not "not found" alone
            raise ResnetlabError(
                f"model file not found: {path} is {why}; point the link at the model file, "
                "or give the file's path"
            )
        hint = f"; did you mean {near}?" if (near := near_name(path)) else ""
        raise ResnetlabError(f"model file not found: {path}{hint}")


def _not_safetensors_problem(path: Path, error: Exception) -> str:
    """What the file at ``path`` that safetensors could not open (``error``) is instead,
    and what to give in its place."""
    # safetensors says "No such file or directory" of a file it may not read.
    if isinstance(error, OSError) and (problem := permission_problem(path)):
        return problem
    _refuse_tensorflow_format(path)
    kind = other_format(path)
    if kind == "an image":
        return (
            f"{path} is an image, not a model file; give a .safetensors model file "
            "(predict and explain take it first: MODEL_FILE IMAGE...)"
        )
    if kind == "an HDF5 file":
        from ..data.signs import data_set_as_model  # (data imports this module)

        if (data_set := data_set_as_model(path)) is not None:
            return data_set
    if kind in ("an HDF5 file", "a Keras model (.keras)"):
        return (
            f"{path} is {kind}, not a model file; a Keras model converts to one: "
            f"resnetlab convert keras {path} {path.stem}.safetensors"
        )
    if kind == EXPORT_KINDS[0]:
        return (
            f"{path} is an ONNX export, which only predict, eval and serve run; this "
            "needs the .safetensors model file it was exported from"
        )
    if kind is not None:
        return (
            f"{path} is {kind}, not a model file; {_RUN_FILES} (predict, eval and serve "
            "also run .onnx exports)"
        )
    if (short := cut_short(path)) is not None:
        return short
    from ..data.archive import archive_as_model  # (data imports this module)

    if (archive := archive_as_model(path)) is not None:
        return archive
    if path.suffix != ".safetensors" and (path.parent / "best.safetensors").is_file():
        # config.json, metrics.csv...
        return (
            f"{path} is a file of the run in {path.parent}, not a model file; "
            f"{_run_models(path.parent)}"
        )
    if path.suffix == ".pt":
        hint = f"; {_RUN_FILES} (checkpoint.pt is for {option('resume')})"
    elif path.suffix.lower() == ".safetensors":  # named one, and unreadable as one
        hint = "; the file is damaged: copy it again, or save the model again"
    else:
        hint = "; give the .safetensors file that train or save_model wrote"
    return f"{path} is not a safetensors model file ({error}){hint}"


def _run_models(folder: Path) -> str:
    return (
        f"give {folder / 'best.safetensors'} (the best epoch's model) or last.safetensors "
        "(the last epoch's)"
    )


# What other_format calls the files that ``resnetlab export`` writes: inference programs
# with every BatchNorm folded, which no command trains from.
EXPORT_KINDS = ("an ONNX export", "a torch.export program (.pt2 export)", "a TorchScript export")


def checkpoint_kind() -> str:
    """What other_format calls a run's checkpoint.pt."""
    return f"a training checkpoint (for {option('resume')})"


# What other_format(by_content=True) calls a safetensors file (a model file, or bare weights).
SAFETENSORS_KIND = "a safetensors file"


# The tags (field number << 3 | wire type) of the ModelProto fields that follow its first,
# ir_version: producer name and version, domain, model version, doc string, graph, opsets.
ONNX_FIELDS = frozenset((0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42))


def is_onnx_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` begins as an ONNX model does, whatever its name (``export --format
    onnx`` writes any name): ``ir_version`` (field 1, a small number), then a later field.
    A pipe is not read (nor waited on, without a writer): it is no file to run."""
    if not Path(path).is_file():
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(3)
    except OSError:
        return False
    return len(head) == 3 and head[0] == 0x08 and 0 < head[1] < 0x80 and head[2] in ONNX_FIELDS


def other_format(path: Path, *, by_content: bool = False) -> str | None:
    """What a file that is not a safetensors file is, when it is one of the PyTorch, ONNX or
    Keras files users mistake for a model file: exports (``resnetlab export``), checkpoints,
    and Keras models not yet converted. ``by_content``: what its bytes say, safetensors
    (``SAFETENSORS_KIND``) included, for a file that is not what its ``.onnx`` says."""
    if by_content:
        if _safetensors_size(path)[0]:
            return SAFETENSORS_KIND
    elif path.suffix.lower() == ".onnx" or is_onnx_file(path):
        return EXPORT_KINDS[0]
    from ..data.decode import IMAGE_EXTENSIONS  # (data imports this module)

    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return "an image"
    try:
        with path.open("rb") as f:
            if f.read(8) == b"\x89HDF\r\n\x1a\n":  # Keras's .h5 files and SIGNS data sets
                return "an HDF5 file"
        with zipfile.ZipFile(path) as archive:
            if {"config.json", "model.weights.h5"} <= set(archive.namelist()):
                return "a Keras model (.keras)"
            names = {name.split("/", 1)[-1]: name for name in archive.namelist()}
            # archive_format: newer torch; serialized_exported_program.json: torch 2.4
            if {"archive_format", "serialized_exported_program.json"} & names.keys():
                return EXPORT_KINDS[1]
            if any(name.startswith("code/") for name in names):
                return EXPORT_KINDS[2]
            if "data.pkl" in names:
                # The pickle holds the dict's keys, not the tensors (those are separate
                # entries): small, and read as bytes, not unpickled.
                pickled = archive.read(names["data.pkl"])
                if b"images_trained" in pickled:
                    return checkpoint_kind()
                if b"_parameters" in pickled and b"_modules" in pickled:  # an nn.Module's own
                    return (
                        "a pickled whole model (torch.save(model)), never unpickled here as it "
                        f"could run code; {option('pretrained')} takes its "
                        "torch.save(model.state_dict())"
                    )
                return f"a PyTorch weights file (torch.save), which {option('pretrained')} takes"
    except (zipfile.BadZipFile, OSError):
        return None
    return None


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from its file, in eval mode, with its ``ModelMeta`` as ``model.meta``.

    Args:
        path: a ``.safetensors`` model file written by ``save_model`` or ``train``.
        device: where its weights go: ``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``xpu``, or
            ``auto`` (a GPU where there is one).

    Returns:
        The model in eval mode; ``model.meta`` holds its class names, input size, how
        images reach it (``resize``, ``crop_fraction``: ``data.decode.resize_plan``, as
        ``engine.predict.read_input`` applies it), normalisation and training summary.

    Raises:
        ResnetlabError: a missing or damaged file, or a device this machine lacks.
    """
    from ..engine.distributed import resolve_device  # engine builds on models

    device = resolve_device(device)
    path = path_argument(path, "the model file")
    meta = read_model_meta(path)
    skeleton = _check_shapes(path, meta)
    # Given memory without weights drawn for it (a fifth of a second for a ResNet-50, and
    # the caller's random generator left where it was): the file's fill every parameter
    # and buffer, as load_state_dict (strict) checks and no model has a buffer it leaves
    # out (tests/models/test_registry.py).
    model = skeleton.to_empty(device=device)
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise ResnetlabError(f"{path}: its weights cannot be read ({e})") from None
    bad = first_nonfinite(state)
    if bad is not None:
        raise ResnetlabError(
            f"{path}: its {bad} holds NaN or inf; the file is damaged or comes from a run "
            "that diverged"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise ResnetlabError(f"{path} does not match its model {meta.model}: {first}") from None
    return attach_meta(model, meta).to(device).eval()


def model_skeleton(path: str | os.PathLike, meta: ModelMeta) -> nn.Module:
    """The model file's model built on the meta device, which allocates nothing; a model or
    option this version lacks (a newer resnetlab's file, or an edited one) is named with
    the file."""
    try:
        with torch.device("meta"):
            return create_model(meta.model, num_classes=meta.num_classes, **meta.model_kwargs)
    except ResnetlabError as e:
        raise ResnetlabError(
            f"{path} holds a model this resnetlab cannot build ({e}); a newer resnetlab "
            "wrote it, or the file was edited"
        ) from None


def _check_shapes(path: str | os.PathLike, meta: ModelMeta) -> nn.Module:
    """The file's tensors have the names and shapes of its model's state dict: that model,
    built on the meta device, returned.

    Checked on a model built on the meta device, which allocates nothing: metadata that
    asks for a model far larger than its weights fails here, not in the allocator.
    """
    skeleton = model_skeleton(path, meta)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise ResnetlabError(f"{path}: its weights cannot be read ({e})") from None
    if problem := shapes_problem(expected, found):
        raise ResnetlabError(f"{path} does not match its model {meta.model}: {problem}")
    return skeleton


def shapes_problem(
    expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]
) -> str | None:
    """What keeps weights of the shapes ``found`` (name -> shape) from loading into a state
    dict of the shapes ``expected``, in a few words, or None when they fit."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [k for k in expected if k in found and found[k] != expected[k]]
    if missing:
        return f"no {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        return f"unexpected {unexpected[0]}{more}"
    if wrong:
        k = wrong[0]
        return f"{k} has shape {list(found[k])}, the model's is {list(expected[k])}"
    return None
