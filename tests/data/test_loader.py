import re

import numpy as np
import pytest
import torch

from resnetlab.data import Augment, DeviceLoader, ImageSet, channel_stats
from resnetlab.errors import ResnetlabError


def _images(n=10, size=8):
    # Image i is filled with value i, so a batch tells which images it holds.
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, size, size, 3)
    return images.contiguous(), torch.arange(n)


def test_every_image_once_per_epoch_and_seeded_order():
    images, labels = _images(10)
    loader = DeviceLoader(images, labels, batch_size=3, shuffle=True, seed=1)
    epoch0 = torch.cat([y for _, y in loader])
    assert sorted(epoch0.tolist()) == list(range(10))
    again = torch.cat(
        [y for _, y in DeviceLoader(images, labels, batch_size=3, shuffle=True, seed=1)]
    )
    assert torch.equal(epoch0, again)
    loader.set_epoch(1)
    epoch1 = torch.cat([y for _, y in loader])
    assert sorted(epoch1.tolist()) == list(range(10)) and not torch.equal(epoch0, epoch1)


def test_batches_are_normalised_and_match_labels():
    images, labels = _images(6)
    loader = DeviceLoader(images, labels, batch_size=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and x.is_contiguous()
    expected = (y[:, None].float() / 255 - 0.5) / torch.tensor([0.25, 0.5, 1.0])
    torch.testing.assert_close(x[:, :, 0, 0], expected)
    assert [len(yb) for _, yb in loader] == [4, 2]
    assert [len(yb) for _, yb in DeviceLoader(images, labels, batch_size=4, drop_last=True)] == [4]


def test_channels_last_batches():
    images, labels = _images(4)
    x, _ = next(iter(DeviceLoader(images, labels, batch_size=4, channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_crops_stay_within_the_padded_image():
    # A 6x6 image with distinct pixel values; padded by 2, every crop is a shifted window.
    base = torch.arange(1, 37, dtype=torch.uint8).reshape(6, 6)
    images = base[None, :, :, None].expand(64, 6, 6, 3).contiguous()
    loader = DeviceLoader(
        images,
        torch.zeros(64, dtype=torch.int64),
        batch_size=64,
        shuffle=True,
        augment=Augment(crop_padding=2),
        std=(1 / 255,) * 3,
    )
    x, _ = next(iter(loader))
    padded = torch.nn.functional.pad(base.float(), (2, 2, 2, 2))
    windows = {(dy, dx): padded[dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)}
    seen = set()
    for crop in x[:, 0]:
        matches = [k for k, w in windows.items() if torch.equal(w, crop)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 10  # offsets really vary


def test_flip_mirrors_about_half_of_the_images():
    base = torch.arange(8, dtype=torch.uint8)[None, :].expand(8, 8)
    images = base[None, :, :, None].expand(400, 8, 8, 3).contiguous()
    loader = DeviceLoader(
        images,
        torch.zeros(400, dtype=torch.int64),
        batch_size=400,
        shuffle=True,
        augment=Augment(flip=True),
        std=(1 / 255,) * 3,
    )
    x, _ = next(iter(loader))
    flipped = (x[:, 0, 0, 0] == 7).sum().item()
    assert all(row[0] in (0, 7) for row in x[:, 0, 0].tolist())
    assert 150 < flipped < 250


def test_cutout_blanks_one_square():
    images = torch.full((50, 16, 16, 3), 200, dtype=torch.uint8)
    loader = DeviceLoader(
        images,
        torch.zeros(50, dtype=torch.int64),
        batch_size=50,
        shuffle=True,
        augment=Augment(cutout=4),
        mean=(0.1,) * 3,
    )
    x, _ = next(iter(loader))
    zeros = (x[:, 0] == 0).sum((1, 2))
    assert zeros.max() == 16 and zeros.min() >= 4  # 4x4, clipped at borders to >= 2x2


def test_shards_partition_an_epoch():
    images, labels = _images(10)
    shards = [
        torch.cat(
            [
                y
                for _, y in DeviceLoader(
                    images, labels, batch_size=2, shuffle=True, rank=r, world_size=3
                )
            ]
        )
        for r in range(3)
    ]
    assert all(len(s) == 3 for s in shards)  # equal shards: 10 // 3
    assert len(set(torch.cat(shards).tolist())) == 9


def test_per_batch_work_does_not_grow_with_batch_size():
    # The whole batch is built by a fixed number of tensor ops, however many images it holds.
    from torch.profiler import ProfilerActivity, profile

    images = torch.randint(0, 255, (1024, 32, 32, 3), dtype=torch.uint8)
    labels = torch.zeros(1024, dtype=torch.int64)
    counts = []
    for batch_size in (16, 256):
        loader = DeviceLoader(
            images,
            labels,
            batch_size=batch_size,
            shuffle=True,
            augment=Augment(crop_padding=4, flip=True, cutout=8),
        )
        it = iter(loader)
        next(it)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            next(it)
        counts.append(len(prof.events()))
    assert counts[0] == counts[1]


def test_channel_stats():
    images = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    images[0, ..., 0] = 255
    images[..., 1] = 51
    mean, std = channel_stats(images)
    assert mean == pytest.approx([0.5, 0.2, 0.0])
    assert std == pytest.approx([0.5, 0.0, 0.0], abs=1e-5)


def test_imageset_resize_and_subset():
    images = torch.randint(0, 255, (5, 8, 8, 3), dtype=torch.uint8)
    s = ImageSet(images, torch.tensor([0, 1, 1, 0, 1]), ["a", "b"], "test")
    assert s.class_counts() == [2, 3]
    big = s.resized(16)
    assert big.images.shape == (5, 16, 16, 3) and big.images.dtype == torch.uint8
    assert s.resized(8) is s
    assert s.subset(torch.tensor([1, 2])).labels.tolist() == [1, 1]
    flat = ImageSet(torch.full((1, 8, 8, 3), 77, dtype=torch.uint8), torch.tensor([0]), ["a"])
    assert (flat.resized(13).images == 77).all()


def test_jitter_boxes_have_the_asked_areas_and_aspect_ratios():
    from resnetlab.data.loader import JITTER_RATIOS, epoch_plan

    plan = epoch_plan(
        4000, seed=1, epoch=3, shuffle=True, augment=Augment(scale_jitter=0.35), size=(32, 32)
    )
    cx, cy, w, h = plan["box"].unbind(1)
    assert ((cx - w / 2 >= -1e-6) & (cx + w / 2 <= 1 + 1e-6)).all()  # inside the image
    assert ((cy - h / 2 >= -1e-6) & (cy + h / 2 <= 1 + 1e-6)).all()
    unclipped = (w < 1) & (h < 1)
    area, ratio = (w * h)[unclipped], (w / h)[unclipped]
    assert area.min() >= 0.35 - 1e-5 and area.max() <= 1 + 1e-5
    assert ratio.min() >= JITTER_RATIOS[0] - 1e-5 and ratio.max() <= JITTER_RATIOS[1] + 1e-5
    assert area.min() < 0.4 and area.max() > 0.95  # the whole range is used
    # Jitter is drawn after everything else: plans without it are what they were.
    other = Augment(crop_padding=2, flip=True)
    with_jitter = Augment(crop_padding=2, flip=True, scale_jitter=0.5)
    a = epoch_plan(50, seed=1, epoch=0, shuffle=True, augment=other, size=(8, 8))
    b = epoch_plan(50, seed=1, epoch=0, shuffle=True, augment=with_jitter, size=(8, 8))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resized_crops_cut_the_box_and_resize_it_back():
    from resnetlab.data.loader import resized_crops

    images = torch.zeros(2, 3, 8, 16, dtype=torch.uint8)  # (B, 3, H, W)
    images[..., 8:] = 200  # left half black, right half grey
    whole = torch.tensor([[0.5, 0.5, 1.0, 1.0]] * 2)
    assert torch.equal(resized_crops(images, whole), images)
    halves = torch.tensor([[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0]])  # left, right half
    out = resized_crops(images, halves)  # (bilinear: the edge next to the other half blends)
    assert (out[0, ..., :-1] == 0).all() and (out[1, ..., 1:] == 200).all()
    # One image at a time (a streaming worker) gives what the batch gives.
    one_by_one = torch.cat([resized_crops(images[i : i + 1], halves[i : i + 1]) for i in range(2)])
    assert torch.equal(one_by_one, out)


def test_jitter_in_the_device_loader_scales_and_shifts_the_content():
    # A white square in the middle of black images: jittered crops enlarge and move it.
    images = torch.zeros(64, 16, 16, 3, dtype=torch.uint8)
    images[:, 6:10, 6:10] = 255
    loader = DeviceLoader(
        images, torch.zeros(64), batch_size=64, shuffle=True, augment=Augment(scale_jitter=0.35)
    )
    ((x, _),) = list(loader)
    white = (x[:, 0] > 0.5).float().sum((1, 2))  # (B,) pixels of the square
    assert white.min() >= 16 and white.max() > 20  # never smaller, often larger
    centres = (x[:, 0] > 0.5).float().nonzero()[:, 2].float()
    assert centres.std() > 0.3  # not always in the same place


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"crop_padding": -1}, "crop_padding must be at least 0, got -1"),
        ({"crop_padding": "4"}, "crop_padding must be a whole number, got '4'"),
        ({"cutout": 2.5}, "cutout must be a whole number, got 2.5"),
        ({"flip": "yes"}, "flip must be True or False, got 'yes'"),
        ({"scale_jitter": 2}, "scale_jitter is the smallest crop's share of the area, in (0, 1]"),
    ],
)
def test_augmentation_out_of_range_is_one_line_when_made(options, says):
    """Not torch's error at the first batch ("random_ expects 'from' to be less than 'to')."""
    with pytest.raises(ResnetlabError) as error:
        Augment(**options)
    assert str(error.value).startswith(says)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"batch_size": "32"}, "batch_size must be a whole number, got '32'"),
        ({"mean": (0.5, 0.5)}, "mean must be three numbers, one per RGB channel, got (0.5, 0.5)"),
        ({"std": 0.25}, "std must be three numbers, one per RGB channel, got 0.25"),
        ({"std": (0.25, 0, 0.25)}, "std must be above 0 for each channel, got (0.25, 0, 0.25)"),
        ({"augment": {"crop_padding": 4}}, "augment must be an Augment (Augment(crop_padding=4, "),
        ({"seed": "1"}, "seed must be a whole number, got '1'"),
        ({"seed": 1.5}, "seed must be a whole number, got 1.5"),
        ({"world_size": 0}, "world_size must be at least 1, got 0"),
        ({"world_size": "2"}, "world_size must be a whole number, got '2'"),
        ({"rank": 0.0, "world_size": 2}, "rank must be a whole number, got 0.0"),
        ({"rank": 2, "world_size": 2}, "rank must be below world_size (2), got 2"),
        ({"rank": -1, "world_size": 2}, "rank must be at least 0, got -1"),
        ({"num_workers": -1}, "num_workers must be at least 0, got -1"),
        ({"train": "false"}, "train is True or False, got 'false'"),
        ({"channels_last": "no"}, "channels_last is True or False, got 'no'"),
    ],
)
def test_make_loader_names_a_wrong_argument_in_one_line(options, says):
    """Not torch's 'The size of tensor a (2) must match ...' at the first batch, a
    comparison's TypeError, a dict's AttributeError, batches of inf from a std of 0, a
    ZeroDivisionError for world_size 0, a shard past the last, or 'false' read as True."""
    from resnetlab.data import make_loader

    images, labels = _images()
    split = ImageSet(images, labels, [str(i) for i in range(10)])
    given = {"batch_size": 4, "device": "cpu", "mean": (0.5,) * 3, "std": (0.25,) * 3}
    with pytest.raises(ResnetlabError) as error:
        make_loader(split, **{"train": True, **given, **options})
    assert str(error.value).startswith(says)


@pytest.mark.parametrize(
    ("images", "labels", "says"),
    [
        (
            np.zeros((2, 4, 4, 3), np.uint8),
            torch.tensor([0, 1]),
            "ImageSet: images must be a tensor, uint8 (N, H, W, 3), got ndarray; convert it with "
            "torch.from_numpy",
        ),
        (
            torch.zeros(2, 4, 4, 3, dtype=torch.uint8),
            [0, 1],
            "ImageSet: labels must be a tensor, int64 (N,), got list; convert it with torch.tensor",
        ),
        (
            torch.zeros(2, 4, 4, 3, dtype=torch.uint8),
            torch.tensor([0.0, 1.0]),
            "ImageSet: labels must be class indices, int64 (N,), got torch.float32 (2,)",
        ),
        (
            torch.zeros(2, 4, 4, 3, dtype=torch.uint8),
            torch.tensor([0, 5]),
            "ImageSet: labels must be from 0 to 1, one per class name, got 0 to 5",
        ),
        (
            torch.zeros(2, 4, 4, 3, dtype=torch.uint8),
            torch.tensor([-1, 1]),
            "ImageSet: labels must be from 0 to 1, one per class name, got -1 to 1",
        ),
    ],
)
def test_an_image_set_of_what_it_cannot_hold_is_refused_when_made(images, labels, says):
    """Not "expected uint8 (N, H, W, 3), got uint8 (2, 4, 4, 3)" for an array, an
    AttributeError for a list, bincount's NotImplementedError for float labels, or cross
    entropy's 'Target 5 is out of bounds' at the first batch."""
    with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
        ImageSet(images, labels, ["cat", "dog"])
    ImageSet(torch.zeros(2, 4, 4, 3, dtype=torch.uint8), torch.tensor([1, 1]), ["cat", "dog"])


@pytest.mark.parametrize(
    ("size", "options", "says"),
    [
        (0, {}, "size's height must be at least 1, got 0"),
        ("8", {}, "size's height must be a whole number, got '8'"),
        ((8, 0), {}, "size's width must be at least 1, got 0"),
        (8, {"resize": "stretch"}, "unknown resize 'stretch'; choose squash, crop"),
    ],
)
def test_resized_names_a_size_or_resize_that_is_none_in_one_line(tmp_path, size, options, says):
    """Not torch's 'Input and output sizes should be greater than 0', an unpacking
    ValueError, a squash for a resize it does not know, or, streamed, an error for each
    file when read."""
    from resnetlab.data import StreamingSet

    images, labels = _images()
    names = [str(i) for i in range(10)]
    split = ImageSet(images, labels, names)
    with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
        split.resized(size, **options)
    assert split.resized((4, 6), resize="crop").image_size == (4, 6)
    streamed = StreamingSet([str(tmp_path / f"{i}.png") for i in names], labels, names, (8, 8))
    if not options:
        with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
            streamed.resized(size)
    assert streamed.resized(6).image_size == (6, 6)


def test_channel_stats_refuses_what_are_no_pixels():
    """Floats in [0, 1] were read as pixels of 0 to 255 (a mean of 0.002), channels first
    a size mismatch, and no images a mean of NaN."""
    from resnetlab.data import split_stats

    images, labels = _images()
    wrong = [
        (
            images.float() / 255,
            "channel_stats takes uint8 (N, H, W, 3) images, got torch.float32 (10, 8, 8, 3)",
        ),
        (
            images.permute(0, 3, 1, 2),
            "channel_stats takes uint8 (N, H, W, 3) images, got torch.uint8 (10, 3, 8, 8)",
        ),
        (images.numpy(), "channel_stats takes uint8 (N, H, W, 3) images, got ndarray"),
        (images[:0], "channel_stats needs at least one image, got none"),
    ]
    for given, says in wrong:
        with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
            channel_stats(given)
    split = ImageSet(images, labels, [str(i) for i in range(10)])
    with pytest.raises(ResnetlabError, match=r"^sample must be at least 1, got 0$"):
        split_stats(split, sample=0)
    with pytest.raises(ResnetlabError, match=r"^seed must be a whole number, got '1'$"):
        split_stats(split, seed="1")
    assert split_stats(split) == channel_stats(images)


def test_subset_takes_positions_as_a_list_and_names_what_are_none(tmp_path):
    """A list was an AttributeError for dtype, a position past the end the paths' 'list
    index out of range', and a mask of a streamed set took paths 0 and 1 for its places."""
    from resnetlab.data import StreamingSet

    images, labels = _images()
    names = [str(i) for i in range(10)]
    paths = [str(tmp_path / f"{i}.png") for i in range(10)]
    memory = ImageSet(images, labels, names, paths=paths)
    streamed = StreamingSet(paths, labels, names, (8, 8))
    mask = labels >= 8
    for split in (memory, streamed):
        assert split.subset([2, 5]).labels.tolist() == [2, 5]
        assert split.subset(mask).labels.tolist() == [8, 9]
        assert split.subset(mask).paths == paths[8:]
        assert len(split.subset([])) == 0
        with pytest.raises(
            ResnetlabError,
            match=r"^subset's positions must be from 0 to 9 \(the images there are\), got 2 to "
            r"100$",
        ):
            split.subset([2, 100])
        with pytest.raises(
            ResnetlabError,
            match=r"^subset takes the positions of images .*"
            r"got \[0\.5\]$",
        ):
            split.subset([0.5])


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"batch_size": "1"}, "batch_size must be a whole number, got '1'"),
        ({"world_size": 0}, "world_size must be at least 1, got 0"),
        ({"seed": "1"}, "seed must be a whole number, got '1'"),
        ({"augment": {"flip": True}}, "augment must be an Augment (Augment(crop_padding=4, "),
        ({"shuffle": "false"}, "shuffle is True or False, got 'false'"),
        ({"mean": (0.5, 0.5)}, "mean must be three numbers, one per RGB channel"),
        ({"labels": [0, 1]}, "DeviceLoader's labels must be a tensor, got list"),
        (
            {"images": np.zeros((2, 4, 4, 3), np.uint8)},
            "DeviceLoader's images must be a tensor, got ndarray",
        ),
    ],
)
def test_a_device_loader_made_directly_checks_its_options_as_make_loader_does(options, says):
    """A batch size as text was a comparison's TypeError, world_size=0 a ZeroDivisionError,
    a dict for augment an AttributeError, an array 'expected uint8, got uint8'."""
    given = {
        "images": torch.zeros(2, 4, 4, 3, dtype=torch.uint8),
        "labels": torch.tensor([0, 1]),
        "batch_size": 1,
        **options,
    }
    with pytest.raises(ResnetlabError) as error:
        list(DeviceLoader(given.pop("images"), given.pop("labels"), **given))
    assert str(error.value).startswith(says)
