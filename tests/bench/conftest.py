from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch) -> Path:
    """No benchmark test writes to the user's cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNETLAB_CACHE", str(cache))
    return cache
