"""The model registry: ``register_model``, ``create_model``, ``list_models``.

Every builder is a keyword-only function ``name(*, num_classes, **kwargs) -> nn.Module``,
so tests and the CLI can treat all models alike. Models are listed by family (ImageNet,
CIFAR, Keras), and within a family in the order they are registered: group by group
(``ModelInfo.group``), each residual net before its plain twin.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import functools
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import (
    ResnetlabError,
    SettingWarning,
    UnknownModelError,
    count_argument,
    keywords_of_call,
    on_command_line,
    option,
    shown,
    warn,
)
from ..options import INPUT_SIZES, MAX_CLASSES, is_input_size
from .blocks import PARTS, SWITCHES

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before building it."""

    name: str
    builder: Builder
    family: str  # the data it is built for: "imagenet", "cifar" or "keras"
    input_size: int  # the resolution it is designed for
    num_classes: int  # the default head size
    description: str
    group: str = ""  # the kind of net, a heading in `resnetlab models`: "ResNeXt", ...
    source: str = ""  # where the architecture (and its state-dict keys) come from

    @property
    def takes_input_size(self) -> bool:
        """Whether the architecture depends on the input size (as the Keras model's Dense
        layer does), so that the builder takes ``input_size``."""
        return "input_size" in inspect.signature(self.builder).parameters

    def size_kwargs(self, input_size: int | None) -> dict[str, int]:
        """The builder keywords for images of ``input_size``: ``{"input_size": n}`` for a
        model whose architecture depends on it, else nothing."""
        return {"input_size": input_size} if self.takes_input_size and input_size else {}


_REGISTRY: dict[str, ModelInfo] = {}
_FAMILIES = ("imagenet", "cifar", "keras")
# What every registered model has besides forward(): see register_model.
MODEL_INTERFACE = ("num_classes", "num_stages", "stage_of")


def register_model(
    *,
    family: str,
    input_size: int,
    num_classes: int,
    description: str,
    group: str = "",
    source: str = "",
) -> Callable[[Builder], Builder]:
    """Decorator that registers a builder under its function name, for ``create_model``,
    ``train(model=...)`` and ``load_model`` (in a new session, register it again first).

    The builder takes ``num_classes`` and its own options as keywords and returns a model
    with the interface of resnetlab's ResNets (``MODEL_INTERFACE``): ``num_classes``,
    ``num_stages`` (its residual stages) and ``stage_of(parameter_name)`` (0 for the stem,
    ``i`` for stage ``i``, ``num_stages + 1`` for the head), which saving, fine-tuning and
    the explanations use. The surest way is to build a ``models.resnet.ResNet``.

    Args:
        family: ``"imagenet"``, ``"cifar"`` or ``"keras"``: the data it is built for (its
            place in ``list_models``, and the defaults a recipe takes for it).
        input_size: the image side it is designed for.
        num_classes: its classifier's default size.
        description: one line for ``resnetlab models``.
        group: the kind of net, a heading in ``resnetlab models``.
        source: where the architecture comes from.

    Raises:
        ValueError: the name is registered already, or ``family`` is not one of these.
        ResnetlabError: ``input_size`` or ``num_classes`` is not a whole number in range.
    """
    # Checked here, where the mistake is made, not as a TypeError deep in a training run.
    if family not in _FAMILIES:
        raise ValueError(
            f"register_model's family must be one of {', '.join(map(repr, _FAMILIES))}, "
            f"got {family!r}"
        )
    input_size = count_argument(input_size, "register_model's input_size", None)
    if not is_input_size(input_size):
        raise ResnetlabError(
            f"register_model's input_size must be {INPUT_SIZES}, got {input_size:,}"
        )
    num_classes = count_argument(num_classes, "register_model's num_classes", 0)

    def decorator(builder: Builder) -> Builder:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(
            name, builder, family, input_size, num_classes, description, group, source
        )
        return builder

    return decorator


def list_models(
    pattern: str | Sequence[str] | None = None,
    *,
    exclude_filters: str | Sequence[str] = "",
    filter: str | Sequence[str] | None = None,  # timm's name of pattern
) -> list[str]:
    """Registered model names by family, then registration order; optionally those that
    match a glob or any glob of a list (an empty pattern, like None, filters nothing), less
    those that match ``exclude_filters`` (a glob or a list of them), as timm's
    ``list_models(filter, exclude_filters=...)`` (``filter=`` is ``pattern``, by timm's
    name)."""
    if filter is not None:
        if pattern is not None:
            raise ResnetlabError("list_models takes one pattern: give pattern or filter, not both")
        pattern = filter
    include = _globs(pattern, "the pattern")
    exclude = _globs(exclude_filters, "exclude_filters")
    families = {
        n: _FAMILIES.index(i.family)  # (register_model takes no other)
        for n, i in _REGISTRY.items()
    }
    names = [
        n
        for n in _REGISTRY
        if (not include or any(fnmatch.fnmatch(n, p) for p in include))
        and not any(fnmatch.fnmatch(n, p) for p in exclude)
    ]
    return sorted(names, key=families.__getitem__)  # stable: registration order within


def _globs(patterns: str | Sequence[str] | None, what: str) -> list[str]:
    """A glob or a list of globs as a list, empty ones left out."""
    if patterns is None or isinstance(patterns, str):
        return [patterns] if patterns else []
    if isinstance(patterns, (list, tuple)) and all(isinstance(p, str) for p in patterns):
        return [p for p in patterns if p]
    raise ResnetlabError(f"{what} is a glob such as 'resnet*' or a list of them, got {patterns!r}")


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; unknown names raise with the closest matches."""
    if not isinstance(name, str):  # e.g. from a hand-edited config.json
        raise UnknownModelError(f"a model name is a string, got {shown(name)}")
    try:
        return _REGISTRY[name]
    except KeyError:
        if name and os.path.exists(name):  # a model file or run folder, to start from
            whole = "" if on_command_line() else "; resnetlab.load_model reads a model file whole"
            raise UnknownModelError(
                f"unknown model {name!r}: that is a path, not a model name; to start from the "
                f"weights it holds, give {option('pretrained', name)}{whole}"
            ) from None
        base, dot, tag = name.removeprefix("timm/").partition(".")
        # timm's model.tag (resnet50.a1_in1k): its model and its weights; "_in1k"-like tags
        # only, not a file's suffix (resnet50.h5)
        if dot and "_" in tag and base in _REGISTRY and _REGISTRY[base].family == "imagenet":
            raise UnknownModelError(
                f"unknown model {name!r}: the model is {base}, and timm's weights {tag} for "
                f"it are given apart: {option('pretrained', f'timm:{base}.{tag}')}"
            ) from None
        close = _near_models(name)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}; {hint}`resnetlab models` lists all"
        ) from None


def _near_models(name: str, shown: int = 3) -> list[str]:
    """The registered models ``name`` may mean: those it begins (``resnext`` for
    ``resnext50_32x4d``) or is part of (two characters or more), then those of a group it
    names (``preact``: the pre-activation ResNets), then the closest spellings."""

    def squashed(text: str) -> str:
        return text.lower().replace("-", "").replace("_", "").replace(" ", "")

    query = squashed(name)  # spelled as the names are: "ResNet 50" as "resnet50"
    names = list(_REGISTRY)
    if not query:
        return []
    found = [n for n in names if squashed(n).startswith(query)]
    found += [n for n in names if len(query) >= 2 and query in squashed(n)]  # not "a"
    found += [n for n in names if len(query) >= 4 and query in squashed(_REGISTRY[n].group)]
    found += difflib.get_close_matches(name.lower(), names, n=shown, cutoff=0.5)
    return list(dict.fromkeys(found))[:shown]


def model_options(name: str) -> list[str]:
    """The options ``create_model(name, ...)`` takes (besides ``num_classes`` and
    ``pretrained``), in the constructor's order: the builder's own keywords, and where the
    builder passes the rest on (``**kwargs``), those of the class it builds, which is built
    on the meta device to find it (no weights are made; once per builder: ResNet-1202 takes
    a second even so)."""
    info = model_info(name)
    return list(_builder_options(info.builder, info.num_classes))


@functools.cache
def _builder_options(builder: Builder, num_classes: int) -> tuple[str, ...]:
    """``model_options`` of the model ``builder`` builds."""

    def keywords(function: Callable) -> tuple[list[str], bool]:
        params = inspect.signature(function).parameters.values()
        named = [
            p.name
            for p in params
            if p.name != "num_classes"
            and (
                p.kind is p.KEYWORD_ONLY
                or (p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty)
            )
        ]
        return named, any(p.kind is p.VAR_KEYWORD for p in params)

    options, passes_on = keywords(builder)
    if passes_on:
        with torch.device("meta"):
            model = builder(num_classes=num_classes)
        options += [o for o in keywords(type(model).__init__)[0] if o not in options]
    return tuple(options)


def unknown_options(
    info: ModelInfo, kwargs: dict[str, Any], *, num_classes: bool = False
) -> str | None:
    """One line naming the options in ``kwargs`` that ``info``'s model does not take and
    those it does (with the closest where one is near), or None where all are its own.
    ``num_classes`` lists that too, for ``create_model``'s keywords (not --model-option's)."""
    try:
        options = ["num_classes"] * num_classes + model_options(info.name)
    except Exception:  # a builder registered from outside that needs more to build
        return None
    unknown = [k for k in kwargs if k not in options]
    if not unknown:
        return None
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, options, n=1)
        if hint := _peer_option(key, options):
            named.append(f"{key} ({hint})")
        elif not num_classes and difflib.get_close_matches(key, ["num_classes"], n=1):
            # num_clases: not "did you mean norm_layer?", the closest of the rest
            named.append(f"{key} (the number of classes comes from the data)")
        else:
            named.append(f"{key} (did you mean {close[0]}?)" if close else key)
    takes = f"it takes {', '.join(options)}" if options else "it takes none"
    return f"{info.name} has no option {', '.join(named)}; {takes}"


def _peer_option(key: str, options: list[str]) -> str | None:
    """What to give instead of an option of torchvision's, timm's or keras.applications'
    builders that users bring along, where a near spelling would mislead (``weights`` is not
    ``widths``) or none is near (``include_top``). ``options``: the model's own."""
    if key == "weights":
        return (
            f"torchvision's weights load with {option('pretrained', 'torchvision')} here "
            "(weights=None is taken, and is the default)"
        )
    if key == "checkpoint_path":
        return f"a weights file loads with {option('pretrained', 'FILE')}"
    if key in ("in_chans", "in_channels"):
        return "every model takes RGB images; grayscale ones are read with the channel repeated"
    if key == "drop_rate":
        return f"dropout is an option of {', '.join(_models_taking(key))}"
    # keras.applications.ResNet50(include_top, weights, input_shape, pooling, classes, ...)
    if key == "include_top" and on_command_line():  # train always puts one on
        return "train puts a classifier for the data's classes on the network"
    if key == "include_top":
        return (
            "num_classes=0 is the network without its classifier, giving the pooled "
            "features; model.forward_features(x) gives the last feature map"
        )
    if key == "pooling":
        return "the model pools its last feature map itself"
    if key == "classifier_activation":
        return "every model returns logits: model(x).softmax(-1) gives the probabilities"
    if key == "input_shape" and "input_size" in options:
        return f"{option('input_size', text='N')} for (N, N, 3) images"
    if key == "input_shape":
        return "it takes images of any size, as Keras's input_shape=(None, None, 3)"
    return None


def _models_taking(option: str) -> list[str]:
    """The registered models whose builders take ``option``."""
    taking = []
    for name in list_models():
        with contextlib.suppress(Exception):  # a builder registered from outside
            if option in model_options(name):
                taking.append(name)
    return taking


def built_options(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """Options as a model file or run folder stored them, each switch saved as text turned
    into what the net was built with: ``--model-option residual=False`` once stored the
    text "False", which counts as true. Warns of each, so that the user can write true or
    false."""
    built = {k: bool(v) if k in SWITCHES and isinstance(v, str) else v for k, v in kwargs.items()}
    for key in (k for k in kwargs if kwargs[k] is not built[k]):
        warn(
            f"{where}: {key} is stored as the text {kwargs[key]!r}, which built the net with "
            f"{key}={built[key]}; it is rebuilt so (an option now takes true or false)",
            SettingWarning,
        )
    return built


def classifier_size(num_classes: object) -> int:
    """``num_classes`` as a classifier's size (0: none, pooled features out) when it is a
    whole number from 0 to ``MAX_CLASSES``, else one line naming it: what ``create_model``
    and every model's ``reset_classifier`` take."""
    num_classes = count_argument(num_classes, "num_classes", minimum=0)
    if num_classes > MAX_CLASSES:  # a 10^10-class classifier asks for terabytes
        raise ResnetlabError(f"num_classes must be at most {MAX_CLASSES:,}, got {num_classes:,}")
    return num_classes


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    pretrained: str | os.PathLike | bool | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, with fresh weights or started from pretrained ones.

    Args:
        name: a name from ``list_models()``, e.g. ``"resnet50"`` or ``"resnet20"``.
        num_classes: size of the classifier; defaults to the model's own (1000 for
            ImageNet nets, 10 for CIFAR nets, 6 for ``resnet50_keras``), or with
            ``pretrained`` to the weights' own.
        pretrained: weights to start from: ``"torchvision"`` (or ``True``),
            ``"torchvision:IMAGENET1K_V2"``, ``"timm:resnet50.a1_in1k"``, a weights file
            or a run folder (see ``resnetlab.convert.pretrained``). A classifier of
            another size is replaced; ``model.pretrained`` reports what was loaded.
        **kwargs: options of the model's constructor (``shortcut="B"``,
            ``stride_in_1x1=True``, ``zero_init_residual=True``...; ``input_size=96`` for
            ``resnet50_keras`` alone, whose classifier depends on it: the others take any
            image size). An option the model lacks is refused, naming the ones it has.

    Returns:
        The model, in train mode, with ``model_name`` and ``model_kwargs`` set so that
        ``save_model`` can record how to rebuild it.
    """
    info = model_info(name)
    if "weights" in kwargs and kwargs["weights"] is None:  # torchvision's "no weights", ours too
        kwargs.pop("weights")
    if pretrained is not None and pretrained is not False:
        from ..convert.pretrained import create_pretrained  # convert builds on models

        # An option the model lacks is said before the weights are fetched (a download).
        if problem := unknown_options(info, kwargs, num_classes=True):
            raise ResnetlabError(problem)
        with keywords_of_call({"model": "name"}):  # create_model(name="resnet18"), not model=
            return create_pretrained(name, pretrained, num_classes=num_classes, **kwargs)
    num_classes = classifier_size(info.num_classes if num_classes is None else num_classes)
    try:
        model = info.builder(num_classes=num_classes, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            problem = unknown_options(info, kwargs, num_classes=True)
            raise ResnetlabError(problem or f"{name}: {e}") from None
        if not (parts := [p for p in PARTS if kwargs.get(p) is not None]):
            raise
        # A part called as torchvision's are, which it does not take: nn.GroupNorm alone.
        raise ResnetlabError(
            f"{name}: building with {', '.join(parts)} failed ({e}); the blocks call "
            "norm_layer(channels) (as torchvision's do), act_layer() and attn_layer(channels): "
            "give a factory of that form, e.g. norm_layer=functools.partial(nn.GroupNorm, 32)"
        ) from None
    except ValueError as e:  # a value the constructor refuses, e.g. shortcut="C"
        raise ResnetlabError(f"{name}: {e}") from None
    missing = [a for a in MODEL_INTERFACE if not hasattr(model, a)]
    if missing:  # a builder registered from outside (register_model says what it needs)
        raise ResnetlabError(
            f"{name}'s builder made a {type(model).__name__} without {', '.join(missing)}, "
            "which training, saving and explaining use; see help(resnetlab.register_model)"
        )
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model
