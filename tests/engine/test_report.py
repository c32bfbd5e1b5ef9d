import errno
import io
import os

import pytest

from resnetlab.engine.report import RunLog


class WindowsPipe(io.StringIO):
    """A stream over descriptor ``fd`` whose writes fail as Windows fails a write to a pipe
    whose reader has gone: OSError with EINVAL, not BrokenPipeError."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd, self.broken = fd, True

    def fileno(self) -> int:
        return self.fd

    def write(self, s: str) -> int:
        if self.broken:
            raise OSError(errno.EINVAL, "Invalid argument")
        return super().write(s)

    def flush(self) -> None:
        if self.broken:
            raise OSError(errno.EINVAL, "Invalid argument")

    def close(self) -> None:
        self.broken = False
        super().close()


def _log_on(stream, tmp_path, monkeypatch) -> tuple[RunLog, list[str]]:
    monkeypatch.setattr("sys.stderr", stream)
    log, stops = RunLog(tmp_path / "run", epochs=1), []
    log.on_output_lost = lambda: lambda: stops.append("stop")
    return log, stops


def test_einval_on_a_pipe_whose_reader_has_gone_stops_the_run_as_a_broken_pipe(
    tmp_path, monkeypatch
):
    # Windows: `resnetlab train 2>&1 | head -1` fails the next write with EINVAL.
    read, write = os.pipe()
    stream = WindowsPipe(write)
    try:
        log, stops = _log_on(stream, tmp_path, monkeypatch)
        log.message("epoch 1")
        assert log.output_lost and stops == ["stop"]
        log.message("epoch 2")  # nothing more is written
        assert stops == ["stop"]
        log.close()
    finally:
        stream.close()
        os.close(read)
        os.close(write)


def test_einval_on_a_file_is_an_error_of_its_own(tmp_path, monkeypatch):
    # The same errno from a file on a disk does not mean a reader went away.
    with open(tmp_path / "log.txt", "w") as file:
        stream = WindowsPipe(file.fileno())
        log, stops = _log_on(stream, tmp_path, monkeypatch)
        with pytest.raises(OSError) as caught:
            log.message("epoch 1")
        assert caught.value.errno == errno.EINVAL
        assert not log.output_lost and stops == []
        log.close()
        stream.close()
