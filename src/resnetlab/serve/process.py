"""``resnetlab serve`` in a child process: what load tests and the server's own tests talk to."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ResnetlabError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds resnetlab/


class ServerProcess:
    """``python -m resnetlab serve MODEL_FILE --port 0 ARGS``, started and stopped.

    The server picks a free loopback port and prints its address; ``start`` waits, at most
    ``timeout_s``, until that address answers ``/healthz``, so a server that dies or hangs
    is an error with its output instead of a wait without end.

    Args:
        model_file: the model file to serve.
        args: more ``resnetlab serve`` flags, e.g. ``"--max-batch", "1"``.
        log_dir: where the server's stdout and stderr go.
        timeout_s: longest wait for the server to come up.
    """

    def __init__(
        self,
        model_file: str | os.PathLike,
        *args: str,
        log_dir: str | os.PathLike,
        timeout_s: float = 120.0,
    ) -> None:
        self.command = [
            sys.executable, "-m", "resnetlab", "serve", str(model_file), "--port", "0", *args
        ]  # fmt: skip
        self.log_dir = Path(log_dir)
        self.timeout_s = timeout_s
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> ServerProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stdout, stderr = self.log_dir / "stdout.txt", self.log_dir / "stderr.txt"
        # The child imports this copy of resnetlab, whether installed or not.
        path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        with stdout.open("wb") as out, stderr.open("wb") as err:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            url = served_url(stdout.read_text())
            if url and _healthy(url):
                self.url = url
                return self
            time.sleep(0.1)
        self.stop()
        raise ResnetlabError(
            f"`{' '.join(self.command)}` did not come up within {self.timeout_s:g} s "
            f"(exit status {self.process.returncode}): {stdout.read_text()}{stderr.read_text()}"
        )

    def stop(self) -> None:
        """SIGTERM (uvicorn answers the requests in flight for up to 5 s, then 503 to the rest),
        then SIGKILL after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def metadata(self) -> dict:
        with urllib.request.urlopen(self.url + "metadata", timeout=30) as answer:
            return json.load(answer)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=5) as answer:
            return json.load(answer) == {"status": "ok"}
    except (urllib.error.URLError, OSError, ValueError):
        return False


def served_url(output: str) -> str | None:
    """The address ``resnetlab serve``'s first line gives (``serving ... at URL``, followed
    by where it listens when that is every address), once it is printed."""
    found = re.search(r" at (http://\S+/)( on this machine \(.*\))?$", output, re.MULTILINE)
    return found.group(1) if found else None
