import hashlib
import tarfile

import numpy as np
import pytest

from resnetlab.data import cifar10, download_cifar10, load_dataset, load_eval_split
from resnetlab.errors import DataError


def _records(labels, seed):
    """CIFAR-10 binary records and the (N, 32, 32, 3) images they encode."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(len(labels), 3072)  # R, G, B planes
    records = np.concatenate([np.array(labels, np.uint8)[:, None], planes], axis=1)
    return records.tobytes(), images


def _batches_folder(root, names=("cat", "dog", "ship")):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    train1, img1 = _records([0, 1, 2, 1], seed=1)
    train2, img2 = _records([2, 2, 0], seed=2)
    test, img_test = _records([1, 0], seed=3)
    (folder / "data_batch_1.bin").write_bytes(train1)
    (folder / "data_batch_2.bin").write_bytes(train2)
    (folder / "test_batch.bin").write_bytes(test)
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    return folder, np.concatenate([img1, img2]), img_test


def test_binary_records_load_to_the_right_pixels_and_labels(tmp_path):
    folder, train_images, test_images = _batches_folder(tmp_path)
    data = load_dataset(str(folder))
    assert data.class_names == ["cat", "dog", "ship"]
    assert np.array_equal(data.train.images.numpy(), train_images)
    assert data.train.labels.tolist() == [0, 1, 2, 1, 2, 2, 0]
    assert np.array_equal(data.val.images.numpy(), test_images)  # test_batch is held out
    assert data.val.labels.tolist() == [1, 0]
    # The red plane comes first in a record: pixel (0, 0) red is the record's second byte.
    raw = (folder / "data_batch_1.bin").read_bytes()
    assert data.train.images[0, 0, 0].tolist() == [raw[1], raw[1 + 1024], raw[1 + 2048]]


def test_tar_gz_of_the_batches_folder(tmp_path):
    folder, _, _ = _batches_folder(tmp_path / "src")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="cifar-10-batches-bin")
    data = load_dataset(str(archive), image_size=16)
    assert data.train.images.shape == (7, 16, 16, 3) and len(data.val) == 2
    assert load_eval_split(str(archive)).labels.tolist() == [1, 0]


def test_truncated_batch_file(tmp_path):
    folder, _, _ = _batches_folder(tmp_path)
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(
        DataError,
        match=r"data_batch_2\.bin: 9,209 bytes is not a whole number of "
        r"3073-byte CIFAR-10 records",
    ):
        load_dataset(str(folder))


def test_labels_outside_the_class_list(tmp_path):
    folder, _, _ = _batches_folder(tmp_path, names=("cat", "dog"))
    with pytest.raises(
        DataError,
        match=r"data_batch_1\.bin: labels outside the class list: "
        r"found label 2 but there are 2 classes",
    ):
        load_dataset(str(folder))


def _fake_archive(tmp_path):
    folder, train_images, _ = _batches_folder(tmp_path / "src")
    archive = tmp_path / "served" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="cifar-10-batches-bin")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest(), train_images


def test_download_verifies_the_checksum(tmp_path):
    archive, md5, _ = _fake_archive(tmp_path)
    got = download_cifar10(tmp_path / "cache", url=archive.as_uri(), md5=md5, quiet=True)
    assert got == tmp_path / "cache" / "cifar-10-binary.tar.gz"
    assert got.read_bytes() == archive.read_bytes()


def test_download_rejects_a_wrong_checksum_and_keeps_nothing(tmp_path):
    archive, _, _ = _fake_archive(tmp_path)
    with pytest.raises(DataError, match=r"MD5 checksum is [0-9a-f]{32}, expected 0{32}"):
        download_cifar10(tmp_path / "cache", url=archive.as_uri(), md5="0" * 32, quiet=True)
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_failure_names_the_address(tmp_path):
    missing = (tmp_path / "nothing.tar.gz").as_uri()
    with pytest.raises(DataError, match=r"could not download file://.*nothing\.tar\.gz"):
        download_cifar10(tmp_path / "cache", url=missing, md5="0" * 32, quiet=True)


def test_named_cifar10_downloads_into_the_cache_when_asked(tmp_path, monkeypatch):
    archive, md5, train_images = _fake_archive(tmp_path)
    monkeypatch.setattr(cifar10, "URL", archive.as_uri())
    monkeypatch.setattr(cifar10, "MD5", md5)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"cifar10: not found in .*; add download=True"):
        load_dataset("cifar10", cache_dir=cache)
    data = load_dataset("cifar10", download=True, cache_dir=cache)
    assert np.array_equal(data.train.images.numpy(), train_images) and len(data.val) == 2
    monkeypatch.setattr(cifar10, "URL", "file:///nonexistent")  # cached now: no second fetch
    assert len(load_dataset("cifar10", cache_dir=cache).train) == 7


def test_eval_downloads_cifar10_when_asked_as_its_message_says(tmp_path, monkeypatch, capsys):
    # eval said "add --download" and then refused the flag (evaluate took no download).
    from resnetlab import create_model, evaluate, save_model
    from resnetlab.cli import main

    archive, md5, _ = _fake_archive(tmp_path)
    monkeypatch.setattr(cifar10, "URL", archive.as_uri())
    monkeypatch.setattr(cifar10, "MD5", md5)
    model = tmp_path / "m.safetensors"
    save_model(create_model("resnet8", num_classes=3), model, input_size=32)  # the fake's 3
    args = ["eval", str(model), "--data", "cifar10", "--png", str(tmp_path / "c.png")]
    assert main(args) == 2
    assert "; add --download to fetch it" in capsys.readouterr().err
    with pytest.raises(DataError, match="; add download=True to fetch it"):
        evaluate(model, "cifar10")
    assert main([*args, "--download"]) == 0
    assert "on cifar10: accuracy" in capsys.readouterr().out
    assert evaluate(model, "cifar10").result.count == 2  # cached now


def test_missing_official_batches_are_named(tmp_path, monkeypatch):
    # The official batches hold 10,000 images each; 4 here, to keep the files small.
    monkeypatch.setattr(cifar10, "OFFICIAL_BATCH", 4)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in (1, 2, 4):
        (folder / f"data_batch_{i}.bin").write_bytes(_records([0, 1, 2, 1], seed=i)[0])
    (folder / "test_batch.bin").write_bytes(_records([1, 0], seed=9)[0])
    (folder / "batches.meta.txt").write_text("\n".join(cifar10.CLASS_NAMES) + "\n\n")
    data = load_dataset(str(folder))
    assert data.train.notes == [
        f"data_batch_3.bin and data_batch_5.bin are missing from {folder}: the other 3 are "
        "read alone; extract cifar-10-binary.tar.gz again for all 50,000 training images"
    ]
    assert not any("missing" in note for note in data.val.notes)  # the test batch is there
    # Batches of another size are a data set of its own in this format: nothing is missing.
    assert load_dataset(str(_batches_folder(tmp_path / "own")[0])).train.notes == []
