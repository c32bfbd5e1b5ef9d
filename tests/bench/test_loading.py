import numpy as np
import pytest
from PIL import Image

from resnetlab.bench import bench_data
from resnetlab.errors import DataWarning


def test_bench_data_on_digits():
    record = bench_data("digits", batch_size=64, steps=3, workers=0, device="cpu")
    assert record["kind"] == "data" and record["images"] == 1797
    assert record["image_size"] == [8, 8] and record["workers"] == 0
    for key in ("load_cold_s", "load_cached_s", "ratio"):
        assert isinstance(record[key], float)  # stored as measured, rounded when shown
    device, usual = record["device_loader"], record["usual_way"]
    # One training epoch each, 28 full batches of 64: the rates are images over epoch times.
    for side in (device, usual):
        assert side["images_per_s"] * side["epoch_s"] == pytest.approx(28 * 64)
    assert record["ratio"] == usual["epoch_s"] / device["epoch_s"]
    share = record["epoch_share"]
    assert share["model"] == "resnet20" and share["steps"] == 3 and share["precision"] == "fp32"
    assert share["cuda_graphs"] is False  # on the CPU
    assert share["share"] == share["data_s"] / share["total_s"]
    assert "files" not in record  # digits come from an array, not from files


def test_bench_data_on_an_image_folder_reads_the_files_both_ways(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "pets" / name / f"{i}.png")
    record = bench_data(str(tmp_path / "pets"), batch_size=8, steps=2, workers=0, device="cpu")
    assert record["images"] == 24 and record["image_size"] == [12, 12]
    files = record["files"]
    assert files["images"] == 24
    assert files["ratio"] == files["imagefolder_epoch_s"] / files["streaming_epoch_s"]


def test_bench_data_on_a_folder_named_by_class_in_the_file_names_says_why_no_files_epoch(
    tmp_path,
):
    # SIGNS as JPEGs: 0_IMG_1.jpg, 1_IMG_2.jpg ... in one folder, which ImageFolder cannot read.
    rng = np.random.default_rng(0)
    (tmp_path / "signs").mkdir()
    for i in range(16):
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "signs" / f"{i % 2}_IMG_{i}.png")
    with pytest.warns(DataWarning, match="no epoch read from the files is timed against Image"):
        record = bench_data(str(tmp_path / "signs"), batch_size=8, steps=1, workers=0)
    assert record["images"] == 16 and "files" not in record
