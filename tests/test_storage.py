import errno
import os
import stat
import subprocess
import sys
import threading

import pytest

from resnetlab.cli import main
from resnetlab.storage import (
    LOCK_NAME,
    FolderInUse,
    WriteError,
    atomic_link,
    atomic_write,
    atomic_write_text,
    hold_folder,
    os_error_line,
    release_folder,
)


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "f.json"
    atomic_write_text(path, "old")
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "f.json"
    atomic_write_text(path, "old")

    def fill_the_disk(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError) as caught:
        atomic_write(path, fill_the_disk)
    assert str(caught.value) == (
        f"cannot write {path}: No space left on device; free some space on that disk or "
        "choose another folder"
    )
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def read_fifo(path):
    """A reader of the FIFO ``path`` in a thread (a writer's open waits for one): its
    bytes, once joined, in ``got`` (nothing, and the thread left waiting, if nothing opens
    the FIFO to write)."""
    got = []
    thread = threading.Thread(target=lambda: got.append(path.read_bytes()), daemon=True)
    thread.start()
    return thread, got


def test_a_pipe_or_device_is_written_into_never_replaced(tmp_path):
    """It was renamed over: a FIFO became a file, and a command run as root with
    `--png /dev/null` put a PNG in place of the system's /dev/null."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    thread, got = read_fifo(fifo)
    atomic_write(fifo, lambda f: f.write(b"new"))
    thread.join(timeout=10)
    assert got == [b"new"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="no /proc")
def test_dev_stdout_is_written_into_the_file_it_names(tmp_path):
    """`--png /dev/stdout > f.png`: /dev/stdout (/dev/fd/N, /proc/self/fd/N) is a link to the
    file the shell opened, and the temporary file was made beside the link, in /proc (which
    failed), or renamed over it (as root, replacing the system's /dev/stdout)."""
    path = tmp_path / "f.bin"
    with path.open("wb") as opened:
        atomic_write(f"/proc/self/fd/{opened.fileno()}", lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="no /proc")
def test_dev_stdout_appended_to_keeps_what_the_file_held(tmp_path):
    """`export model.safetensors - >> all.bin`: the shell opened the file to append to it,
    and /proc/self/fd/N, opened anew to write, was emptied first (O_TRUNC)."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"earlier\n")
    with path.open("ab") as opened:
        atomic_write(f"/proc/self/fd/{opened.fileno()}", lambda f: f.write(b"new"))
    assert path.read_bytes() == b"earlier\nnew"


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="no /dev/fd")
def test_dev_fd_is_written_into_where_it_is_a_folder_of_its_own(tmp_path, monkeypatch):
    """macOS's /dev/fd is a folder of /dev, not a link into /proc as Linux's: /dev/fd/N was
    taken for a plain name there, and the temporary file made beside it failed."""
    realpath = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p: p if p == "/dev/fd" else realpath(p))
    path = tmp_path / "f.bin"
    with path.open("wb") as opened:
        atomic_write(f"/dev/fd/{opened.fileno()}", lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_two_writers_of_one_file_at_once_each_write_a_whole_file(tmp_path):
    """Two commands writing the same output: both wrote through .f.bin.tmp, so that the
    second's rename left the first writing into the file it had renamed (a mix of the two)
    and the first failed with 'No such file or directory'."""
    path = tmp_path / "f.bin"

    def first(f):
        f.write(b"1" * 10)
        atomic_write(path, b"2" * 100)  # the other command, meanwhile
        assert path.read_bytes() == b"2" * 100
        f.write(b"1" * 10)

    atomic_write(path, first)
    assert path.read_bytes() == b"1" * 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    (tmp_path / ".f.bin.tmp").write_bytes(b"torn")  # a killed writer's
    atomic_write(path, b"3")
    assert path.read_bytes() == b"3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_a_link_is_a_second_name_that_a_later_write_of_the_first_leaves_alone(tmp_path):
    last, best = tmp_path / "last.bin", tmp_path / "best.bin"
    atomic_write(last, b"epoch 1")
    atomic_write(best, b"epoch 0")
    assert atomic_link(last, best)
    assert os.path.samefile(last, best) and best.read_bytes() == b"epoch 1"
    atomic_write(last, b"epoch 2")
    assert best.read_bytes() == b"epoch 1" and last.read_bytes() == b"epoch 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.bin", "last.bin"]


def test_a_file_system_without_links_leaves_the_target_as_it_was(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    atomic_write(tmp_path / "best.bin", b"epoch 0")
    atomic_write(tmp_path / "last.bin", b"epoch 1")
    assert not atomic_link(tmp_path / "last.bin", tmp_path / "best.bin")
    assert (tmp_path / "best.bin").read_bytes() == b"epoch 0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.bin", "last.bin"]


def test_a_held_folder_is_refused_to_other_processes_until_the_holder_ends(
    tmp_path, hold_in_another_process
):
    holder = hold_in_another_process(tmp_path)
    with pytest.raises(FolderInUse) as refused:
        hold_folder(tmp_path, "wait for it")
    assert str(refused.value) == f"{tmp_path} is in use by process {holder.pid}: wait for it"
    holder.kill()  # however it ends, the system lets go
    holder.wait()
    hold_folder(tmp_path, "wait for it")
    hold_folder(tmp_path, "wait for it")  # this process may take it again
    release_folder(tmp_path)
    assert (tmp_path / LOCK_NAME).exists()  # still held once
    release_folder(tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()
    release_folder(tmp_path)  # one release too many changes nothing


def test_a_folder_on_a_full_disk_is_held_without_its_holders_name(tmp_path, monkeypatch):
    """Writing the holder's process id to .lock raised the OSError of a full disk from
    hold_folder: train --out on a full disk was a traceback."""
    lock, write = tmp_path / LOCK_NAME, os.write

    def full(fd, data):
        if lock.exists() and os.path.samestat(os.fstat(fd), os.stat(lock)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(fd, data)

    monkeypatch.setattr(os, "write", full)
    hold_folder(tmp_path, "wait for it")
    monkeypatch.undo()
    code = "import sys; from pathlib import Path; from resnetlab.storage import hold_folder; "
    code += "hold_folder(Path(sys.argv[1]), 'wait for it')"
    other = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert f"{tmp_path} is in use by another process: wait for it" in other.stderr
    release_folder(tmp_path)
    assert not lock.exists()


def test_a_missing_folder_or_a_folder_as_target_is_one_line(tmp_path):
    with pytest.raises(WriteError, match="its folder does not exist"):
        atomic_write_text(tmp_path / "nope" / "f.json", "x")
    (tmp_path / "d").mkdir()
    with pytest.raises(WriteError, match="Is a directory; name a file in it"):
        atomic_write_text(tmp_path / "d", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    (tmp_path / "f").write_text("")
    with pytest.raises(WriteError, match="a file stands where a folder is needed"):
        atomic_write_text(tmp_path / "f" / "g.json", "x")
    with pytest.raises(WriteError, match=r"File name too long; choose a shorter name$"):
        atomic_write_text(tmp_path / ("x" * 300 + ".json"), "x")  # 255 bytes a name at most


def test_an_os_error_on_a_named_file_is_one_line():
    assert os_error_line(OSError(errno.EROFS, "Read-only file system", "/ro/x")) == (
        "/ro/x: Read-only file system; choose a folder you can write to"
    )
    assert os_error_line(FileNotFoundError(errno.ENOENT, "No such file", "a.txt")) == (
        "a.txt: No such file; check the path"
    )
    assert os_error_line(OSError(errno.EIO, "I/O error")) is None  # no file named: a bug


def test_an_os_error_on_a_file_this_user_may_not_read_says_so_not_to_write_elsewhere(
    tmp_path, monkeypatch
):
    # A run's config.json or a data folder copied from another account (chmod 600, 700):
    # it was "run/config.json: Permission denied; choose a folder you can write to". Root
    # reads them all, so the kernel's refusals are made here.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    refused = {
        (str(tmp_path / "run" / "config.json"), os.R_OK),
        (str(tmp_path / "photos"), os.X_OK),
        (str(tmp_path / "photos" / "cat"), os.X_OK),
    }
    access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode, **kw: (
            not any(str(p) == path and mode & bit for path, bit in refused)
            and access(p, mode, **kw)
        ),
    )

    def said(path):
        return os_error_line(PermissionError(errno.EACCES, "Permission denied", str(path)))

    assert said(tmp_path / "run" / "config.json") == (
        f"{tmp_path / 'run' / 'config.json'}: no permission to read it; give yourself read "
        "access to it (chmod u+r)"
    )
    assert said(tmp_path / "photos") == (
        f"{tmp_path / 'photos'}: no permission to list this folder; give yourself read access "
        "to it (chmod -R u+rX)"
    )
    assert said(tmp_path / "photos" / "cat" / "maps.npz") == (
        f"{tmp_path / 'photos' / 'cat' / 'maps.npz'}: no permission to open the folder "
        f"{tmp_path / 'photos' / 'cat'}; give yourself access to it (chmod u+rx), or choose "
        "another"
    )
    # One this user may read: a write refused, as before.
    assert said(tmp_path / "out" / "x.png") == (
        f"{tmp_path / 'out' / 'x.png'}: Permission denied; choose a folder you can write to"
    )


def test_the_cli_names_a_path_it_cannot_use_in_one_line(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file where the run folder would go")
    code = main(["experiment", "degradation", "--data", "digits", "--out", str(tmp_path / "taken")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert str(tmp_path / "taken") in err and "Traceback" not in err
