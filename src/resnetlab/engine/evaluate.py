"""Evaluation: loss, accuracy and the confusion matrix, accumulated on the device."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, ResnetlabError, count_argument, option, shell_word
from ..models import ModelMeta
from ..models.files import case_matches, did_you_mean, near_classes


@dataclass
class EvalResult:
    """Mean cross-entropy loss, top-1 (and top-5) accuracy over ``count`` images, and the
    confusion matrix."""

    loss: float
    accuracy: float
    count: int
    # (K, K) int64, rows: true class, columns: predicted class; left out of the repr, which
    # would print K rows of it (to see it: report.result.confusion, or report.per_class())
    confusion: torch.Tensor = field(repr=False)
    top5: float | None = None  # the true class among the five most probable; > 5 classes

    def per_class(self) -> tuple[list[float], list[float]]:
        """(precision, recall) per class; 0 where a class was never predicted / never seen."""
        c = self.confusion.double()
        tp = c.diag()
        precision = (tp / c.sum(0).clamp_min(1)).tolist()
        recall = (tp / c.sum(1).clamp_min(1)).tolist()
        return precision, recall

    @property
    def balanced_accuracy(self) -> float:
        """The recall of each class that has images here, averaged: what the accuracy would
        be if every class had as many images (scikit-learn's ``balanced_accuracy_score``);
        NaN without images."""
        support = self.confusion.sum(1)
        seen = support > 0
        if not seen.any():
            return float("nan")
        recall = self.confusion.diag()[seen].double() / support[seen]
        return recall.mean().item()

    @property
    def imbalanced(self) -> bool:
        """Whether the classes that have images here have different numbers of them, so that
        the balanced accuracy says something the accuracy does not."""
        support = self.confusion.sum(1)
        support = support[support > 0]
        return len(support) > 1 and bool(support.min() != support.max())


@torch.no_grad()
def evaluate_loader(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    autocast: contextlib.AbstractContextManager | None = None,
    observe: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> EvalResult:
    """Run ``model`` (in eval mode) over ``loader``; one host-device sync at the end.
    Top-5 accuracy is counted when there are more than 5 classes. ``observe(x, y, logits)``
    sees each batch (it must not wait for the device either)."""
    was_training = model.training
    model.eval()
    loss_sum = confusion = top5 = None
    count = 0
    try:
        for x, y in loader:
            with autocast or contextlib.nullcontext():
                logits = model(x)
            if observe is not None:
                observe(x, y, logits)
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            if confusion is None:
                confusion = torch.zeros(num_classes**2, dtype=torch.int64, device=y.device)
            # index_add_, not bincount: on a GPU bincount waits to read the largest index.
            pairs = y * num_classes + logits.argmax(1)
            confusion.index_add_(0, pairs, torch.ones_like(pairs))
            loss_sum = loss if loss_sum is None else loss_sum + loss
            if num_classes > 5:
                hits = (logits.topk(5, dim=1).indices == y[:, None]).sum()
                top5 = hits if top5 is None else top5 + hits
            count += len(y)
    finally:
        model.train(was_training)
    if count == 0:
        return EvalResult(
            float("nan"), float("nan"), 0, torch.zeros(num_classes, num_classes, dtype=torch.int64)
        )
    confusion = confusion.reshape(num_classes, num_classes).cpu()
    return EvalResult(
        loss=loss_sum.item() / count,
        accuracy=confusion.diag().sum().item() / count,
        count=count,
        confusion=confusion,
        top5=top5.item() / count if top5 is not None else None,
    )


@dataclass
class EvalReport:
    """``resnetlab.evaluate``'s answer: the numbers and what they refer to."""

    result: EvalResult
    class_names: list[str] = field(repr=False)  # a thousand of them for an ImageNet model
    data: str
    model: str
    notes: list[str] = field(default_factory=list)  # which images were scored, what was adjusted

    def per_class(self) -> dict[str, dict[str, float]]:
        """``{class name: {"precision", "recall", "support"}}``, support being the number of
        images of the class scored."""
        precision, recall = self.result.per_class()
        support = self.result.confusion.sum(1).tolist()
        return {
            name: {"precision": p, "recall": r, "support": n}
            for name, p, r, n in zip(self.class_names, precision, recall, support, strict=True)
        }

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "data": self.data,
            "count": self.result.count,
            "accuracy": self.result.accuracy,
            "top5_accuracy": self.result.top5,
            "balanced_accuracy": self.result.balanced_accuracy,
            "loss": self.result.loss,
            "per_class": [{"class": name, **row} for name, row in self.per_class().items()],
            "confusion": self.result.confusion.tolist(),
            "notes": self.notes,
        }


def evaluate(
    model: nn.Module | str | Path,
    data: str,
    *,
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "fp32",
    download: bool = False,
) -> EvalReport:
    """Evaluate a model file (or a loaded model) on a data set's held-out split.

    Args:
        model: a model file written by resnetlab (``.safetensors``, or ``.onnx`` from
            ``resnetlab export``), or a model returned by ``load_model``.
        data: a data spec as for ``resnetlab train --data``; its test (else validation)
            split is used, or all of it when it has no split, its images brought to the
            model's input size as ``predict`` brings them (the file's ``resize`` and
            ``crop_fraction``).
        batch_size: images per forward pass.
        device: ``auto``, ``cpu``, ``cuda``...
        precision: ``fp32``, or ``bf16``/``fp16`` autocast (faster where the hardware has
            that arithmetic; the accuracy may move by an image or two).
        download: fetch ``cifar10`` into the cache folder if it is not there.

    Returns:
        Loss, accuracy, confusion matrix and per-class precision and recall.
    """
    from ..data import make_loader
    from .config import arrays_as_data
    from .distributed import resolve_device
    from .inference import (
        inference_model,
        is_channels_last,
        load_model_file,
        model_file_meta,
        nonfinite_outputs_cause,
    )

    batch_size = count_argument(batch_size, option("batch_size"))
    if problem := arrays_as_data("data", data, "test"):  # X_test, Y_test
        raise ResnetlabError(problem)
    device_ = resolve_device(device)
    model_file = None if isinstance(model, nn.Module) else str(model)
    name = model_file or getattr(model, "model_name", "model")
    if not isinstance(model, nn.Module):
        model = load_model_file(model, device=device)
    meta = model_file_meta(model, "evaluate")
    # Before the data is read: a precision the model cannot run in is said at once.
    fast = inference_model(  # a model loaded here is run as it is
        model, device_, input_size=meta.input_size, precision=precision, copy=model_file is None
    )
    split = held_out_split(data, meta, download=download, model_file=model_file)
    class_names = list(split.class_names)
    loader = make_loader(
        split,
        train=False,
        batch_size=batch_size,
        device=device_,
        mean=meta.mean,
        std=meta.std,
        channels_last=is_channels_last(fast),
    )
    result = evaluate_loader(fast, loader, meta.num_classes)
    if result.count and not math.isfinite(result.loss):
        raise ResnetlabError(
            f"{name}: the model's outputs are NaN or inf on {data}; "
            + nonfinite_outputs_cause(precision)
        )
    spec = os.fspath(data) if isinstance(data, os.PathLike) else data  # a Path named as text
    return EvalReport(result, class_names, spec, name, list(split.notes))


def held_out_split(
    data: str,
    meta: ModelMeta,
    *,
    download: bool = False,
    fix: str | None = None,
    model_file: str | None = None,
):
    """The split of ``data`` that ``evaluate`` scores (test, else validation, else the
    images the model's run held out of it, else all), at the model's input size, labelled
    as the model's outputs are.

    A set with some of the model's classes (a test folder without one of them), or all of
    them listed in another order, is matched by class name; a class the model does not
    know is refused, as is a set without names whose class count is not the model's. For a
    model that names no classes, a note says that the set's are taken in its order.
    ``fix`` is what the refusal of a class the model lacks says to do, for a caller whose
    data only checks the model (export's); eval's own is to score without the class or
    with another model. ``model_file``: the model's file, for the command that trains on
    the data from its weights, which the refusal of another class count gives.
    """
    from ..data import load_eval_split

    trained_on = (meta.training or {}).get("data")
    held_out = (meta.training or {}).get("held_out")
    split = load_eval_split(
        data,
        image_size=meta.input_size,
        resize=meta.resize,
        crop_fraction=meta.crop_fraction,
        download=download,
        trained_on=trained_on if isinstance(trained_on, str) else None,
        held_out=held_out if isinstance(held_out, dict) else None,
        validated_on=(meta.training or {}).get("validated_on"),
    )
    class_names = list(split.class_names)
    if meta.class_names is not None and class_names != meta.class_names:
        by_case = case_matches(class_names, meta.class_names)
        named = class_names  # as the data names them, for messages
        class_names = [by_case.get(name, name) for name in class_names]
        if any(name not in meta.class_names for name in class_names):
            raise DataError(_unknown_classes_problem(data, split, named, class_names, meta, fix))
        to_model = torch.tensor([meta.class_names.index(name) for name in class_names])
        note = (
            "classes matched to the model's by name"
            if len(class_names) == len(meta.class_names)
            else f"scored on {len(class_names)} of the model's {len(meta.class_names)} classes "
            f"(no {_short([n for n in meta.class_names if n not in class_names])} images)"
        )
        if by_case:
            note += "; " + ", ".join(f"{a} as {b}" for a, b in by_case.items()) + " (case aside)"
        return replace(
            split,
            labels=to_model[split.labels],
            class_names=list(meta.class_names),
            notes=[*split.notes, note],
        )
    if len(class_names) != meta.num_classes:
        # Pretrained weights converted as they are (ImageNet's 1000 outputs, unnamed in a
        # state dict) are for training on the data's classes, not for scoring them.
        weights = model_file or "MODEL_FILE"
        raise DataError(
            f"{data} has {len(class_names)} classes but the model has {meta.num_classes} "
            f"outputs and names no classes to match them by: score it on data of the model's "
            f"{meta.num_classes} classes; to classify these {len(class_names)}, train a model "
            f"on them from its weights (resnetlab train --pretrained {shell_word(weights)} "
            f"--data {shell_word(data)}); "
            'or, for a converted Keras model, convert it again with --classes "a,b,..." '
            "naming its outputs in order"
        )
    if meta.class_names is None and class_names != [str(i) for i in range(len(class_names))]:
        # Nothing to match by name: a model converted without --classes scores in this order.
        note = (
            f"the model names no classes: its outputs are taken as the data's classes in order "
            f"{_short(class_names)}"
        )
        return replace(split, notes=[*split.notes, note])
    return split


def _unknown_classes_problem(
    data: str, split, named: list[str], matched: list[str], meta: ModelMeta, fix: str | None
) -> str:
    """Why ``split`` cannot be scored by a model that lacks some of its classes (``named``
    as the data names them, ``matched`` as matched to the model's, case aside), and the fix
    (``fix`` where given): a near name of a class the model has (``ships`` for ``ship``) is
    hinted at; data of none of its classes is data for another model, not folders to move
    out; data read from no folders (digits, a SIGNS file) has none to move out or rename."""
    from ..data.folders import with_folder_notes

    unknown = [name for name in matched if name not in meta.class_names]
    missing = [name for name in meta.class_names if name not in matched]
    near = near_classes(unknown, missing)
    hint = f" ({question})" if (question := did_you_mean(near, unknown)) else ""
    one = len(unknown) == 1
    classes = "class" if len(named) == 1 else "classes"  # a camera's IMG_0001.jpg...
    scored = _scored_folder(data, split)
    if fix is None:
        fix = _eval_fix(split, named, unknown, near)
    fix = with_folder_notes(split.notes, fix)
    if fix is None:
        return (
            f"{scored} has {len(named)} {classes} {_short(named)}, and the model was trained "
            f"on {len(meta.class_names)} other classes: {_short(meta.class_names)}; score it "
            "with a model trained on its classes, or score this model on images of its own "
            "classes"
        )
    return (
        f"{scored} has {len(named)} {classes} {_short(named)} but the model was trained on "
        f"{len(meta.class_names)}: {_short(meta.class_names)}; {_short(unknown)} "
        f"{'is' if one else 'are'} not among them{hint}; {fix}"
    )


def _eval_fix(split, named: list[str], unknown: list[str], near: dict[str, str]) -> str | None:
    """What eval says to do with data of classes the model lacks (``unknown`` of ``named``,
    ``near`` those like one of its own), or None for data of none of its classes."""
    from ..data.folders import NAMED_CLASSES_NOTE

    none = len(unknown) == len(named)  # nothing to score: another model's data
    those = "that class" if len(unknown) == 1 else "those classes"
    if NAMED_CLASSES_NOTE in split.notes:
        if none:  # IMG_0001.jpg reads as class IMG
            return (
                "classes here come from the file names (the text before the first '_'): "
                "name each file <class>_<anything> with one of the model's classes, or "
                "put the images in class folders"
            )
        # 0_a.jpg ... 5_f.jpg for a model of 0 to 2: the names are classes, some unknown
        return f"score it without {those} (move their files out), or with a model trained on them"
    if split.paths is None:  # digits, a SIGNS file, CIFAR-10's batches: no folders
        return None if none else "score it with a model trained on all of its classes"
    rename = f"rename {'the folder' if len(near) == 1 else 'the folders'} to the model's "
    rename += f"class {'name' if len(near) == 1 else 'names'}"
    if none:  # unless a folder to rename
        return f"{rename}, or score it with a model trained on these classes" if near else None
    fix = f"score it without {those} (move the folders out), or with a model trained on them"
    return f"{rename}, {fix}" if near else fix


def _scored_folder(data: str, split) -> str:
    """What to call the scored split in a message: the split folder inside the data folder
    (``photos/test``), where the classes to move out are, else the data as given."""
    given, source = Path(data).resolve(), Path(split.source).resolve()
    if given.is_dir() and source != given and source.is_relative_to(given):
        return str(Path(data) / source.relative_to(given))
    return data


def _short(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"
