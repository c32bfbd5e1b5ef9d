from pathlib import Path

import pytest

from resnetlab.data import cache
from resnetlab.errors import CacheWarning


@pytest.mark.parametrize(
    ("resnetlab_cache", "xdg", "expected"),
    [
        ("/r", "/x", "/r"),
        ("", "/x", "/x/resnetlab"),
        ("", "relative", "HOME/.cache/resnetlab"),  # the XDG rules: a relative path is ignored
        ("", "", "HOME/.cache/resnetlab"),
    ],
)
def test_the_cache_folder_is_resnetlab_cache_then_xdg_cache_home_then_home(
    monkeypatch, tmp_path, resnetlab_cache, xdg, expected
):
    monkeypatch.setenv("RESNETLAB_CACHE", resnetlab_cache)
    monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    assert cache.cache_root() == Path(expected.replace("HOME", str(tmp_path)))


def test_without_a_home_folder_the_cache_is_a_temporary_folder_said_once(monkeypatch, recwarn):
    """No HOME and a user the system does not know (a container's): Path.home() raises, and
    the command caches in a folder of its own instead of stopping with a traceback."""

    def no_home(cls):
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("RESNETLAB_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(no_home))
    cache._process_cache.cache_clear()
    try:
        root = cache.cache_root()
        assert root.is_dir() and cache.cache_root() == root
        said = [str(w.message) for w in recwarn if issubclass(w.category, CacheWarning)]
        assert said == [
            "no home folder to keep the cache in (HOME is not set and this user has none): "
            f"caching in {root} for this command only; set RESNETLAB_CACHE to a folder you "
            "can write to"
        ]
    finally:
        cache._process_cache.cache_clear()
    with pytest.raises(RuntimeError):  # the patch is what the test thinks it is
        Path.home()


def test_a_squashed_folder_keeps_the_key_it_had_before_crops_were_truncated():
    """Truncating a crop's longer side (as torchvision's Resize does) changed crops' pixels
    alone: a squashed folder's cache, decoded by resnetlab 0.1 before it, is still read,
    not decoded again and the old entry left behind."""
    stamps, params = ["a/0.png 100 1"], {"root": "/photos", "image_size": 32, "classes": ["a"]}
    assert cache.decode_key(stamps, **params) == "6e2a2133f445fe55bac9ef92787b901f"
    before = cache.decode_key(stamps, **params, resize="crop")  # 0.1's: crops rounded
    assert before == "c3244af447b7c4586b66b71496ea2186"
    assert cache.decode_key(stamps, **params, resize="crop", crop_version=2) != before


def test_a_folder_squashed_by_a_crop_fraction_is_decoded_again_for_a_new_crop_plan(monkeypatch):
    """Squashed to 18 px at 16 (0.875), an image's centre is cut by ``resize_plan`` as a
    crop's is: a new plan (``CROP_VERSION``) is another entry, as for cropped folders; one
    squashed straight to the size keeps its entry."""
    stamps, params = ["a/0.png 100 1"], {"root": "/photos", "image_size": 16, "classes": ["a"]}
    cut = {"crop_fraction": 0.875}
    cropped = {"resize": "crop", "crop_version": cache.CROP_VERSION, **cut}
    before = [cache.decode_key(stamps, **params, **how) for how in ({}, cut, cropped)]
    monkeypatch.setattr(cache, "CROP_VERSION", cache.CROP_VERSION + 1)
    cropped["crop_version"] = cache.CROP_VERSION  # as load_folder passes it
    after = [cache.decode_key(stamps, **params, **how) for how in ({}, cut, cropped)]
    assert after[0] == before[0] and after[1] != before[1] and after[2] != before[2]
    assert len(set(before)) == 3


def test_load_folder_squashed_by_a_crop_fraction_is_decoded_again_for_a_new_crop_plan(
    tmp_path, monkeypatch
):
    import numpy as np
    from PIL import Image

    from resnetlab.data import folders

    for i, name in enumerate("ab"):
        (tmp_path / "d" / name).mkdir(parents=True)
        pixels = np.random.default_rng(i).integers(0, 256, (10, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "d" / name / "0.png")
    how = dict(image_size=8, stream=False, cache_root=tmp_path / "c", resize="squash")
    for fraction in (1.0, 0.875):
        folders.load_folder(tmp_path / "d", **how, crop_fraction=fraction)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folders, "decode_files", no_decoding)
    monkeypatch.setattr(cache, "CROP_VERSION", cache.CROP_VERSION + 1)
    folders.load_folder(tmp_path / "d", **how)
    with pytest.raises(AssertionError, match="decoded again"):
        folders.load_folder(tmp_path / "d", **how, crop_fraction=0.875)
