"""The CPUs a process can keep busy (``usable_cpus``), from fake control-group files: the
affinity count, or fewer where a CPU quota allows less."""

from pathlib import Path

import pytest

from resnetlab.data import decode
from resnetlab.data.decode import cpu_quota, usable_cpus


def cgroups(root, proc: str, files: dict[str, str | bytes]) -> str:
    """A fake ``/proc/self/cgroup`` holding ``proc`` and ``sys/fs/cgroup`` files under
    ``root``; the root, as ``usable_cpus`` takes it."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(proc)
    for path, text in files.items():
        file = root / "sys/fs/cgroup" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(root)


@pytest.fixture(autouse=True)
def many_cores(monkeypatch):
    monkeypatch.setattr(decode, "available_cpus", lambda: 32)


def test_a_v2_limit_caps_the_cores(tmp_path):
    root = cgroups(tmp_path, "0::/\n", {"cpu.max": "200000 100000\n"})
    assert cpu_quota(root) == (2.0, "cpu.max 200000 100000")
    assert usable_cpus(root) == 2


def test_v2_max_is_no_limit(tmp_path):
    root = cgroups(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    assert cpu_quota(root) is None
    assert usable_cpus(root) == 32


def test_the_smallest_of_nested_limits_wins(tmp_path):
    root = cgroups(
        tmp_path,
        "0::/kubepods/pod1/box\n",
        {
            "kubepods/cpu.max": "800000 100000",
            "kubepods/pod1/cpu.max": "300000 100000",
            "kubepods/pod1/box/cpu.max": "max 100000",
        },
    )
    assert cpu_quota(root) == (3.0, "cpu.max 300000 100000")
    assert usable_cpus(root) == 3


def test_a_v1_quota_over_its_period(tmp_path):
    proc = "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n"
    group = "cpu,cpuacct/docker/abc"
    files = {f"{group}/cpu.cfs_quota_us": "400000", f"{group}/cpu.cfs_period_us": "100000"}
    root = cgroups(tmp_path, proc, files)
    assert cpu_quota(root) == (4.0, "cpu.cfs_quota_us 400000, cpu.cfs_period_us 100000")
    assert usable_cpus(root) == 4


def test_v1_minus_one_is_no_limit(tmp_path):
    files = {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}
    root = cgroups(tmp_path, "5:cpuacct,cpu:/\n", files)
    assert cpu_quota(root) is None
    assert usable_cpus(root) == 32


def test_a_fractional_quota_rounds_up(tmp_path):
    root = cgroups(tmp_path, "0::/\n", {"cpu.max": "150000 100000"})
    assert cpu_quota(root) == (1.5, "cpu.max 150000 100000")
    assert usable_cpus(root) == 2


def test_a_quota_above_the_affinity_leaves_the_affinity(tmp_path):
    root = cgroups(tmp_path, "0::/\n", {"cpu.max": "6400000 100000"})
    assert usable_cpus(root) == 32


@pytest.mark.parametrize(
    "files",
    [
        {},  # no cpu.max: the controller not enabled
        {"cpu.max": "lots 100000"},
        {"cpu.max": "200000 0"},
        {"cpu.max": "200000"},
        {"cpu.max": b"\xff\xfe"},
        {"cpu.cfs_quota_us": "200000"},  # v1's files under a v2 group: not read
    ],
)
def test_missing_or_unreadable_settings_are_no_limit(tmp_path, files):
    root = cgroups(tmp_path, "0::/\n", files)
    assert cpu_quota(root) is None
    assert usable_cpus(root) == 32


def test_a_folder_where_the_setting_should_be_is_no_limit(tmp_path):
    (tmp_path / "sys/fs/cgroup/cpu.max").mkdir(parents=True)
    assert usable_cpus(cgroups(tmp_path, "0::/\n", {})) == 32


def test_no_cgroup_file_is_no_limit(tmp_path):
    assert cpu_quota(tmp_path) is None
    assert usable_cpus(tmp_path) == 32


def test_a_file_without_read_permission_is_no_limit(tmp_path, monkeypatch):
    root = cgroups(tmp_path, "0::/\n", {"cpu.max": "200000 100000"})
    refused = tmp_path / "sys/fs/cgroup/cpu.max"
    read_text = Path.read_text

    def read(self, *args, **kwargs):  # as the kernel refuses it (root reads any file)
        if self == refused:
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read)
    assert cpu_quota(root) is None
