import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from resnetlab.data import (
    Augment,
    DeviceLoader,
    ImageSet,
    StreamingLoader,
    StreamingSet,
    load_dataset,
    make_loader,
    split_stats,
)
from resnetlab.data import streaming as streaming_module
from resnetlab.errors import DataError, DataWarning, ResnetlabError, WorkersLost

from .conftest import noise, write_tree

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


@pytest.fixture
def tree(tmp_path):
    # PNG is lossless, so decoding in memory and streaming see the same pixels.
    return write_tree(
        tmp_path / "d",
        {c: [noise(10 * k + i, (10, 10)) for i in range(7)] for k, c in enumerate("abc")},
    )


def _both(tree):
    memory = load_dataset(str(tree), stream=False).train
    streamed = load_dataset(str(tree), stream=True).train
    assert isinstance(memory, ImageSet) and isinstance(streamed, StreamingSet)
    return memory, streamed


def _epochs(loader, epochs=(0, 1)):
    out = []
    for e in epochs:
        loader.set_epoch(e)
        out.append(list(loader))
    return out


def test_streaming_batches_equal_device_batches(tree):
    memory, streamed = _both(tree)
    aug = Augment(crop_padding=2, flip=True, cutout=3)
    kw = dict(train=True, batch_size=4, device="cpu", mean=MEAN, std=STD, augment=aug, seed=5)
    device = make_loader(memory, **kw)
    stream = make_loader(streamed, num_workers=0, **kw)
    assert isinstance(device, DeviceLoader) and isinstance(stream, StreamingLoader)
    assert len(device) == len(stream) == 5  # 21 images, last partial batch dropped
    for ours, theirs in zip(_epochs(device), _epochs(stream), strict=True):
        assert len(ours) == len(theirs)
        for (x1, y1), (x2, y2) in zip(ours, theirs, strict=True):
            assert x2.shape == (4, 3, 10, 10) and x2.dtype == torch.float32 and x2.is_contiguous()
            assert torch.equal(y1, y2) and y2.dtype == torch.int64
            torch.testing.assert_close(x1, x2, rtol=0, atol=1e-6)


def test_worker_processes_give_the_same_batches(tree):
    _, streamed = _both(tree)
    kw = dict(
        train=True,
        batch_size=5,
        device="cpu",
        mean=MEAN,
        std=STD,
        augment=Augment(crop_padding=1, flip=True),
        seed=2,
    )
    in_process = _epochs(make_loader(streamed, num_workers=0, **kw))
    workers = make_loader(streamed, num_workers=2, **kw)
    assert workers.num_workers == 2
    for ours, theirs in zip(in_process, _epochs(workers), strict=True):
        for (x1, y1), (x2, y2) in zip(ours, theirs, strict=True):
            assert torch.equal(y1, y2) and torch.equal(x1, x2)


def test_evaluation_order_every_image_and_channels_last(tree):
    memory, streamed = _both(tree)
    loader = make_loader(
        streamed,
        train=False,
        batch_size=8,
        device="cpu",
        mean=MEAN,
        std=STD,
        num_workers=0,
        channels_last=True,
    )
    batches = list(loader)
    assert [len(y) for _, y in batches] == [8, 8, 5]
    assert torch.equal(torch.cat([y for _, y in batches]), memory.labels)
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last)
    expected = memory.images[:8].permute(0, 3, 1, 2) / 255 - torch.tensor(MEAN)[:, None, None]
    expected = expected / torch.tensor(STD)[:, None, None]
    torch.testing.assert_close(batches[0][0], expected)


def test_shards_match_the_device_loader(tree):
    memory, streamed = _both(tree)
    for rank in range(2):
        kw = dict(
            train=True,
            batch_size=3,
            device="cpu",
            mean=MEAN,
            std=STD,
            seed=1,
            rank=rank,
            world_size=2,
        )
        ours = torch.cat([y for _, y in make_loader(memory, **kw)])
        theirs = torch.cat([y for _, y in make_loader(streamed, num_workers=0, **kw)])
        assert torch.equal(ours, theirs) and len(theirs) == 9  # 21 // 2 = 10: three full batches


def test_training_loader_smaller_than_a_batch_still_yields_it(tree):
    memory, streamed = _both(tree)
    for split in (memory, streamed):
        loader = make_loader(
            split, train=True, batch_size=64, device="cpu", mean=MEAN, std=STD, num_workers=0
        )
        assert len(loader) == 1 and len(next(iter(loader))[1]) == 21


def test_unreadable_file_while_streaming_is_dropped_and_counted(tree):
    streamed = load_dataset(str(tree), stream=True).train
    bad = tree / "b" / "003.png"
    bad.write_bytes(bad.read_bytes()[:60])  # damaged after the set was built
    loader = make_loader(
        streamed, train=False, batch_size=8, device="cpu", mean=MEAN, std=STD, num_workers=0
    )
    with pytest.warns(DataWarning) as record:
        labels = torch.cat([y for _, y in loader])
    messages = [str(w.message) for w in record]
    assert any(m.startswith(f"{bad}: skipped, cannot read it") for m in messages)
    assert any("skipped 1 unreadable image this epoch" in m for m in messages)
    assert len(labels) == 20 and labels.tolist().count(1) == 6
    # The next epoch skips it again without saying so again.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert len(torch.cat([y for _, y in loader])) == 20


def test_worker_processes_leave_the_warning_to_the_main_process(tree, monkeypatch):
    """With loader workers (processes of their own, kept between epochs), a damaged file
    is still named once: not by each worker, nor every epoch, nor by each loader."""
    monkeypatch.setattr(streaming_module, "_WARNED", set())
    streamed = load_dataset(str(tree), stream=True).train
    bad = tree / "a" / "001.png"
    bad.write_bytes(bad.read_bytes()[:60])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for shuffle in (True, False):  # a training loader and a validation loader
            loader = make_loader(
                streamed,
                train=shuffle,
                batch_size=4,
                device="cpu",
                mean=MEAN,
                std=STD,
                num_workers=2,
            )
            for epoch in range(3):
                loader.set_epoch(epoch)
                assert all(len(y) for _, y in loader)
    named = [str(w.message) for w in caught if str(w.message).startswith(f"{bad}:")]
    assert named == [
        f"{bad}: skipped, cannot read it (the file is truncated, as a copy or download "
        "that stopped leaves it)"
    ]


def test_the_unreadable_share_of_a_held_out_part_is_judged_over_its_folder(tmp_path):
    """One damaged file in 40 is 2.5%, under the limit: landing in a validation part of 8
    it is still not fatal (12.5% of that part), as it is not when decoded into memory."""
    root = write_tree(
        tmp_path / "d", {"a": [noise(i) for i in range(20)], "b": [noise(i) for i in range(20, 40)]}
    )
    data = load_dataset(str(root), stream=True, val_split=0.2)
    damaged = data.val.paths[0]
    Path(damaged).write_bytes(b"garbage")
    loader = make_loader(
        data.val, train=False, batch_size=4, device="cpu", mean=MEAN, std=STD, num_workers=0
    )
    with pytest.warns(DataWarning, match="skipped 1 unreadable image this epoch"):
        assert sum(len(y) for _, y in loader) == len(data.val) - 1
    assert data.val.scanned == 40 and data.train.scanned == 40


def test_too_many_unreadable_files_while_streaming_is_fatal(tmp_path):
    root = write_tree(tmp_path / "d", {"a": [noise(0), noise(1)], "b": [noise(2), noise(3)]})
    streamed = load_dataset(str(root), stream=True).train
    (root / "a" / "000.png").write_bytes(b"garbage")
    loader = make_loader(
        streamed, train=False, batch_size=2, device="cpu", mean=MEAN, std=STD, num_workers=0
    )
    # One damaged file is dropped however few the others; a second is too many here.
    with pytest.warns(DataWarning, match="skipped 1 unreadable image this epoch"):
        assert sum(len(y) for _, y in loader) == 3
    (root / "b" / "000.png").write_bytes(b"garbage")
    with pytest.warns(DataWarning), pytest.raises(DataError, match=r"2 of 4 images could not be"):
        list(loader)


def test_a_small_part_with_half_its_images_unreadable_is_said_so(tmp_path):
    """A part of 4 images from a folder of 100: 5% of the folder would be 5 of them, so
    more than half the part is the limit; the error gives the share it stopped at."""
    root = write_tree(
        tmp_path / "d",
        {"a": [noise(i) for i in range(50)], "b": [noise(i) for i in range(50, 100)]},
    )
    part = load_dataset(str(root), stream=True).train.subset(torch.arange(4))
    for path in part.paths[:3]:
        Path(path).write_bytes(b"garbage")
    loader = make_loader(
        part, train=False, batch_size=4, device="cpu", mean=MEAN, std=STD, num_workers=0
    )
    with pytest.warns(DataWarning), pytest.raises(DataError) as caught:
        list(loader)
    assert "3 of the part's 4 images could not be read so far this epoch; more than half " in str(
        caught.value
    )


def test_split_stats_in_memory_and_streamed_agree(tree):
    memory, streamed = _both(tree)
    mean, std = split_stats(memory)
    assert len(mean) == len(std) == 3 and all(0.4 < m < 0.6 for m in mean)  # uniform noise
    streamed_mean, streamed_std = split_stats(streamed)  # 21 images: the sample is all of them
    assert streamed_mean == pytest.approx(mean) and streamed_std == pytest.approx(std)
    sampled = split_stats(streamed, sample=10, seed=1)
    assert sampled[0] != mean and sampled == split_stats(streamed, sample=10, seed=1)


def test_streaming_jitter_equals_the_device_loaders(tree):
    memory, streamed = _both(tree)
    aug = Augment(flip=True, scale_jitter=0.4)
    kw = dict(train=True, batch_size=4, device="cpu", mean=MEAN, std=STD, augment=aug, seed=3)
    device = make_loader(memory, **kw)
    stream = make_loader(streamed, num_workers=0, **kw)
    for ours, theirs in zip(_epochs(device), _epochs(stream), strict=True):
        for (x1, y1), (x2, y2) in zip(ours, theirs, strict=True):
            assert torch.equal(y1, y2)
            torch.testing.assert_close(x1, x2, rtol=0, atol=1e-6)


def test_splits_print_as_a_summary_not_as_their_pixels():
    images = ImageSet(torch.zeros(5, 8, 6, 3, dtype=torch.uint8), torch.zeros(5).long(), ["a"])
    # Sizes as every message gives them: width x height (these are 8 high, 6 wide).
    assert repr(images) == "ImageSet(5 images of 6x8, 1 classes, source='')"
    files = StreamingSet(["x.png"] * 3, torch.zeros(3).long(), ["a", "b"], (16, 12), "d")
    assert repr(files) == "StreamingSet(3 image files decoded at 12x16, 2 classes, source='d')"


@pytest.mark.parametrize(
    ("epoch", "says"),
    [
        ("1", "epoch must be a whole number, got '1'"),
        (None, "epoch must be a whole number, got None"),
        (1.5, "epoch must be a whole number, got 1.5"),
        (-1, "epoch must be at least 0, got -1"),
    ],
)
def test_set_epoch_refuses_what_is_no_epoch_in_one_line(tree, epoch, says):
    """When given, not when iterated (a TypeError adding text or None to the seed); an
    epoch of 1.5 or -1 would draw an order no whole epoch has."""
    memory, streamed = _both(tree)
    kw = dict(train=True, batch_size=4, device="cpu", mean=MEAN, std=STD)
    for loader in (make_loader(memory, **kw), make_loader(streamed, num_workers=0, **kw)):
        with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
            loader.set_epoch(epoch)
        assert loader.epoch == 0
        loader.set_epoch(np.int64(2))
        assert loader.epoch == 2 and type(loader.epoch) is int


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        (
            [0, 1],
            "StreamingSet: labels must be a tensor, int64 (N,), got list; convert it with "
            "torch.tensor",
        ),
        (
            torch.tensor([0.0, 1.0]),
            "StreamingSet: labels must be class indices, int64 (N,), got torch.float32 (2,)",
        ),
        (
            torch.tensor([0, 5]),
            "StreamingSet: labels must be from 0 to 1, one per class name, got 0 to 5",
        ),
        (torch.tensor([0, 1, 1]), "StreamingSet: 2 files but 3 labels"),
    ],
)
def test_a_streaming_set_of_labels_it_cannot_use_is_refused_when_made(labels, says):
    """As ImageSet refuses them: a label past the classes stopped training at its first
    batch with cross entropy's 'Target 5 is out of bounds'; a list, with an AttributeError."""
    with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
        StreamingSet(["a.png", "b.png"], labels, ["cat", "dog"], (8, 8))
    StreamingSet(["a.png", "b.png"], torch.tensor([1, 1]), ["cat", "dog"], (8, 8))


@pytest.mark.parametrize("lost", [ConnectionResetError, ConnectionRefusedError])
def test_a_worker_killed_as_its_batch_is_taken_is_a_lost_worker(lost):
    # A worker passes a batch's memory over a connection of its own: killed just then, the
    # batch's unpickling in this process failed with ConnectionResetError, a traceback,
    # before PyTorch's SIGCHLD handler said that a worker exited.
    class Loader:
        def __iter__(self):
            yield "first batch"
            raise lost(104, "Connection reset by peer")

    batches = streaming_module._answered(Loader())
    assert next(batches) == "first batch"
    with pytest.raises(WorkersLost, match=r"stopped without an answer \(killed, or out of mem"):
        next(batches)


def test_an_epoch_from_a_later_batch_is_that_epochs_rest_without_decoding_the_rest(
    tree, monkeypatch
):
    # A run resumed in the middle of an epoch: the batches after its place, the same as the
    # whole epoch's, without making (or, streamed, decoding) the ones before it.
    memory, streamed = _both(tree)
    aug = Augment(crop_padding=2, flip=True, cutout=3)
    kw = dict(train=True, batch_size=4, device="cpu", mean=MEAN, std=STD, augment=aug, seed=5)
    decoded = []
    read = streaming_module.read_image
    monkeypatch.setattr(
        streaming_module, "read_image", lambda path, *a: decoded.append(path) or read(path, *a)
    )
    for loader in (make_loader(memory, **kw), make_loader(streamed, num_workers=0, **kw)):
        (whole,) = _epochs(loader, epochs=(1,))
        decoded.clear()
        loader.set_epoch(1, start=2)
        rest = list(loader)
        assert len(rest) == 3
        for (x1, y1), (x2, y2) in zip(whole[2:], rest, strict=True):
            assert torch.equal(y1, y2) and torch.equal(x1, x2)
    assert len(decoded) == 3 * 4  # the streamed loader's three batches' images alone
    loader.set_epoch(2)  # and the next epoch whole again
    assert len(list(loader)) == 5


def test_the_default_workers_are_the_cpus_a_quota_allows(tree, monkeypatch):
    from resnetlab.data import decode

    _, streamed = _both(tree)
    monkeypatch.setattr(decode, "available_cpus", lambda: 32)  # a 32-core host
    monkeypatch.setattr(decode, "cpu_quota", lambda root="/": (1.5, "cpu.max 150000 100000"))
    kw = dict(train=True, batch_size=4, device="cpu", mean=MEAN, std=STD)
    assert make_loader(streamed, **kw).num_workers == 2
    assert make_loader(streamed, **kw, world_size=2, rank=0).num_workers == 1
