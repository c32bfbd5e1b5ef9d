"""Do the maps mean something? Two checks, measured on real images.

- Sanity check (Adebayo et al. 2018, "Sanity checks for saliency maps"): re-initialise
  the model's last stage(s) and head with the model's own initialisation and compare the
  maps with the trained model's. A map that explains the model must change when the
  weights it depends on are destroyed; we report the Spearman rank correlation between
  the two maps of each image (1: the same ranking of pixels, 0: unrelated).
- Deletion check: blank the fraction of the image (20% by default) that the map ranks
  highest and measure how much the probability of the predicted class falls; compare with
  blanking the same fraction chosen at random. "Blank" means the training data's mean
  colour (0 after normalisation). The random choice is a uniform random map at the
  layer's own resolution, upsampled as the CAM is, so that the random region has the
  same blob-like shape as a CAM's and differs only in where it is.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ResnetlabError, on_command_line, option
from ..models import create_model
from .cam import (
    METHODS,
    CamResult,
    check_method,
    class_activation_maps,
    coarse_map_note,
    default_layer,
    model_on,
    upsample,
)

FRACTION = 0.2
# How much more the top of a map must take off the probability than as much at random for
# the map to count as showing something (probabilities: 0.02 is 2 points).
CHANCE_MARGIN = 0.02
RANDOM_DRAWS = 4  # random masks per image in the deletion check


def _check_stages(model: nn.Module, stages: int) -> str:
    """The model's name, when ``stages`` of its stages can be re-initialised."""
    name = getattr(model, "model_name", None)
    if name is None or not hasattr(model, "num_stages"):
        raise ResnetlabError("the sanity check needs a resnetlab model (create_model, load_model)")
    if not 1 <= stages <= model.num_stages:
        raise ResnetlabError(
            f"{option('stages')} must be from 1 to {model.num_stages} ({name}'s "
            f"stages), got {stages}"
        )
    return name


def randomized_copy(model: nn.Module, stages: int = 1, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose last ``stages`` stages and head are freshly initialised,
    as ``create_model`` initialises them (seeded); everything below is kept."""
    name = _check_stages(model, stages)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = create_model(name, num_classes=model.num_classes, **model.model_kwargs)
    copied = copy.deepcopy(model)
    first = model.num_stages - stages + 1  # the first stage drawn afresh; the head too
    state = {k: v for k, v in fresh.state_dict().items() if fresh.stage_of(k) >= first}
    copied.load_state_dict(state, strict=False)
    return copied


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation of each pair of maps (N, H, W) -> (N,), ties ranked by
    their average rank; 0 where either map is constant."""
    ra, rb = _ranks(a.flatten(1).double()), _ranks(b.flatten(1).double())
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denominator = (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)
    return ((ra * rb).sum(1) / denominator).float()


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (0-based) along dim 1."""
    ordered = v.sort(1).values
    first = torch.searchsorted(ordered, v, right=False)
    last = torch.searchsorted(ordered, v, right=True) - 1
    return (first + last).double() / 2


def sanity_check(
    model: nn.Module,
    x: torch.Tensor,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    stages: int = 1,
    randomized: nn.Module | None = None,
    trained: CamResult | None = None,
) -> torch.Tensor:
    """Rank correlation (B,) between each image's map from ``model`` and from its copy with
    the last ``stages`` stages re-initialised. Both maps explain the trained model's
    predicted class. ``randomized`` and ``trained`` (the model's maps of ``x``) save work
    when given."""
    trained = trained or class_activation_maps(model, x, method=method, layer=layer)
    randomized = randomized or randomized_copy(model, stages)
    other = class_activation_maps(
        randomized, x, method=method, layer=layer, targets=trained.targets
    )
    return rank_correlation(trained.maps, other.maps)


def blank_top(x: torch.Tensor, maps: torch.Tensor, fraction: float = FRACTION) -> torch.Tensor:
    """``x`` with the ``fraction`` of pixels ranked highest by ``maps`` (B, H, W) set to 0,
    the mean colour of normalised images."""
    flat = maps.flatten(1)
    k = round(fraction * flat.shape[1])
    keep = torch.ones_like(flat)
    keep.scatter_(1, flat.topk(k, dim=1).indices, 0.0)
    return x * keep.view_as(maps)[:, None].to(x.dtype)


@torch.no_grad()
def _probability(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return model(x).float().softmax(1).gather(1, classes[:, None])[:, 0]


def deletion_check(
    model: nn.Module,
    x: torch.Tensor,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    fraction: float = FRACTION,
    draws: int = RANDOM_DRAWS,
    generator: torch.Generator | None = None,
    maps: torch.Tensor | None = None,
    result: CamResult | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """How much the predicted class's probability falls, per image, when the top
    ``fraction`` of the map is blanked, and when a random ``fraction`` is (mean of
    ``draws`` random masks).

    Args:
        maps: (B, H, W) maps to test instead of the method's (e.g. a control).
        result: the model's maps of ``x`` by ``method``, when already computed.

    Returns:
        ``(drop_cam, drop_random)``, each (B,).
    """
    result = result or class_activation_maps(model, x, method=method, layer=layer)
    classes = result.targets
    was_training = model.training
    model.eval()
    try:
        before = result.logits.softmax(1).gather(1, classes[:, None])[:, 0]
        blanked = blank_top(x, result.maps if maps is None else maps, fraction)
        drop_cam = before - _probability(model, blanked, classes)
        drop_random = torch.zeros_like(drop_cam)
        for _ in range(draws):
            noise = torch.rand(len(x), *result.grid, generator=generator).to(x.device)
            random_maps = upsample(noise, x.shape[-2:])
            drop_random += before - _probability(
                model, blank_top(x, random_maps, fraction), classes
            )
    finally:
        model.train(was_training)
    return drop_cam, drop_random / draws


@dataclass
class CheckRow:
    """One method's checks on one model, averaged over the images."""

    method: str
    layer: str
    images: int
    rank_correlation: float  # sanity check: trained vs re-initialised maps
    deletion_drop: float  # probability drop, top `fraction` of the map blanked
    random_drop: float  # probability drop, a random `fraction` blanked
    fraction: float
    stages: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def run_checks(
    model: nn.Module,
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    *,
    methods: Sequence[str] = METHODS,
    layer: str | None = None,
    fraction: float = FRACTION,
    stages: int = 1,
    seed: int = 0,
    on_row: Callable[[CheckRow], None] | None = None,
) -> list[CheckRow]:
    """Both checks for each method, over batches of normalised images (any iterable of
    ``x`` or ``(x, y)``; one tensor is one batch), averaged over every image. One method
    is checked on every batch before the next; ``on_row`` is given each method's row as it
    is done."""
    if isinstance(batches, torch.Tensor):  # not iterated image by image
        batches = [batches]
    if isinstance(batches, str | os.PathLike):  # nor letter by letter
        raise ResnetlabError(
            "run_checks takes batches of normalised images (a loader, or a list of "
            "tensors); for a data set, check_model(model, data)"
        )
    if iter(batches) is batches:  # an iterator: each method goes over the batches again
        batches = list(batches)
    randomized = randomized_copy(model, stages, seed)
    name = default_layer(model) if layer is None else layer
    rows = []
    for m in methods:
        # Each method draws the same random masks, so that its row is the same whichever
        # others are checked with it, and the random baseline is one for all.
        generator = torch.Generator().manual_seed(seed)
        sums = torch.zeros(3, dtype=torch.float64)
        count = 0
        for batch in batches:
            x = batch[0] if isinstance(batch, tuple | list) else batch
            count += len(x)
            cams = class_activation_maps(model, x, method=m, layer=layer)
            rho = sanity_check(model, x, method=m, layer=layer, randomized=randomized, trained=cams)
            drop, rand = deletion_check(
                model, x, fraction=fraction, generator=generator, result=cams
            )
            sums += torch.stack([rho.sum(), drop.sum(), rand.sum()]).double().cpu()
        if count == 0:
            raise ResnetlabError("no images to check")
        rows.append(
            CheckRow(m, name, count, *(sums / count).tolist(), fraction=fraction, stages=stages)
        )
        if on_row is not None:
            on_row(rows[-1])
    return rows


def check_model(
    model: nn.Module | str | os.PathLike,
    data: str,
    *,
    methods: Sequence[str] = METHODS,
    layer: str | None = None,
    fraction: float = FRACTION,
    stages: int = 1,
    batch_size: int = 32,
    device: str = "auto",
    seed: int = 0,
    say: Callable[[str], None] | None = None,
    on_row: Callable[[CheckRow], None] | None = None,
) -> tuple[list[CheckRow], list[str]]:
    """``run_checks`` on the split of ``data`` that ``evaluate`` scores (for a SIGNS file,
    its test images); ``say`` is told what is checked before it starts (it can take
    minutes), and ``on_row`` each method's row as it is done.

    Returns:
        A row per method, and notes: which images were used, a layer whose feature map is
        too coarse to point at a place, and each method whose map points no better than
        chance at what the prediction depends on.
    """
    from ..data import make_loader
    from ..engine.distributed import resolve_device
    from ..engine.evaluate import held_out_split
    from ..engine.inference import model_file_meta
    from ..models import load_model

    if not 0 < fraction < 1:
        raise ResnetlabError(
            f"{option('fraction')}, the share of each image blanked, must be between 0 and 1 "
            f"(0.2 blanks a fifth), got {fraction:g}"
        )
    device_ = resolve_device(device)
    if not isinstance(model, nn.Module):
        model = load_model(model, device=device_)
    else:  # as explain takes it: on the device named (auto: where it is), in float32
        model = model_on(model, device_ if device != "auto" else None)
        device_ = next(model.parameters()).device
    meta = model_file_meta(model, "the faithfulness check")
    _check_stages(model, stages)  # before minutes of work, not after
    methods = list(dict.fromkeys(methods))  # a method named twice is checked once
    for method in methods:
        check_method(method)
    # One blank image: the layer, a misspelt one said before the data is read, and its
    # feature-map size at the input's (for the note on a map too coarse)
    size = meta.input_size
    probe = class_activation_maps(model, torch.zeros(1, 3, size, size, device=device_), layer=layer)
    split = held_out_split(data, meta)
    loader = make_loader(
        split, train=False, batch_size=batch_size, device=device_, mean=meta.mean, std=meta.std
    )
    if say is not None:
        one_method = "--method gradcam" if on_command_line() else "methods=['gradcam']"
        slow = (
            " (Score-CAM runs a forward pass per feature map of the layer, by far the slowest; "
            f"{one_method} checks one method alone)"
            if "scorecam" in methods and len(methods) > 1
            else ""
        )
        say(f"checking {', '.join(methods)} on {len(split):,} images{slow}")
    rows = run_checks(
        model,
        loader,
        methods=methods,
        layer=layer,
        fraction=fraction,
        stages=stages,
        seed=seed,
        on_row=on_row,
    )
    notes = list(split.notes)
    if coarse := coarse_map_note(model, probe.layer, probe.grid, size):
        notes.append(coarse)
    return rows, notes + [verdict for r in rows if (verdict := chance_note(r))]


def chance_note(row: CheckRow) -> str | None:
    """A note where blanking the top of a method's map lowers the predicted probability no
    more than blanking as much at random (``CHANCE_MARGIN``): its maps do not show what the
    prediction depends on (a weak model, or the wrong layer)."""
    if row.deletion_drop > row.random_drop + CHANCE_MARGIN:
        return None
    return (
        f"{row.method}: blanking the top {row.fraction:.0%} of its maps lowers the probability "
        f"no more than blanking a random {row.fraction:.0%} ({row.deletion_drop:.3f} vs "
        f"{row.random_drop:.3f}): its maps do not show what this model's predictions depend "
        f"on (a model near chance, or try another {option('layer')})"
    )


def markdown_header(fraction: float, stages: int) -> str:
    """The first two lines of the checks' Markdown table (``markdown_row`` gives the rest)."""
    return (
        f"| model | method | rank correlation, last {stages} stage(s) re-initialised | "
        f"probability drop, top {fraction:.0%} of the map blanked | "
        f"probability drop, random {fraction:.0%} blanked |\n"
        "| --- | --- | ---: | ---: | ---: |\n"
    )


def markdown_row(row: CheckRow, model: str) -> str:
    """One method's line of the checks' Markdown table."""
    return (
        f"| {model} | {row.method} | {row.rank_correlation:.3f} | {row.deletion_drop:.3f} | "
        f"{row.random_drop:.3f} |\n"
    )
