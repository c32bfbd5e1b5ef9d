"""`resnetlab serve` under careless or hostile clients, against a real server process."""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import struct
import time
import types
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from .conftest import colour_image, start_server

WAIT_S = 60  # longest wait for an answer that should come at once: a hang fails, not hangs


def connect(server) -> socket.socket:
    url = urllib.parse.urlsplit(server.url)
    return socket.create_connection((url.hostname, url.port), timeout=WAIT_S)


def read_until_closed(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection (or resets it, as a byte sent
    just after it closed makes it do)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionError:
        pass
    return data


STALLED = {  # requests sent in part, then nothing
    "raw": b"Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n\x89PNG",
    "chunked": b"Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\x89PNG\r\n",
    "multipart": b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000\r\n\r\n"
    b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n\x89PNG',
    "no body": b"Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n",
}


@pytest.fixture(scope="module")
def timing_out(model_file, tmp_path_factory):
    """A server whose uploads must be all in within --request-timeout 0.5 s. A module's
    fixture runs before the conftest's CPU-only rule: it names the CPU."""
    folder = tmp_path_factory.mktemp("timing_out")
    server = start_server(model_file, folder, "--request-timeout", "0.5", "--device", "cpu")
    yield server
    server.stop()


def test_a_stalled_request_is_answered_408_and_its_connection_closed(timing_out):
    """A client that sends part of its request and then nothing was held for ever, with the
    body read so far: after --request-timeout a stalled body is answered 408, and a
    connection still waiting for a request's headers is closed. The clients stall side by
    side, each on its own connection: the time-outs run out together."""
    healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    idle = {
        "nothing": [],
        "part of the headers": [b"POST /predict HTTP/1.1\r\nHost: x\r\n"],
        # uvicorn's keep-alive timeout ends at the next request's first byte
        "a request, then part of the next": [healthz, b"GET /healthz HTTP/1.1\r\n"],
    }
    stalled = {
        what: [b"POST /predict HTTP/1.1\r\nHost: x\r\n" + head] for what, head in STALLED.items()
    }
    socks = {}
    try:
        for what, sent in {**stalled, **idle}.items():
            socks[what] = connect(timing_out)
            for data in sent:
                socks[what].sendall(data)
        answers = {what: read_until_closed(sock) for what, sock in socks.items()}
    finally:
        for sock in socks.values():
            sock.close()
    for what in stalled:
        answer = answers[what]
        assert answer.startswith(b"HTTP/1.1 408 "), (what, answer)
        assert b"\r\nconnection: close\r\n" in answer.lower(), what
        assert answer.endswith(
            b'{"error":"the upload was not all in within 0.5 s (--request-timeout)"}'
        ), what
    for what, sent in idle.items():
        assert answers[what].count(b"HTTP/1.1 ") == sent.count(healthz), (what, answers[what])
    assert timing_out.get("healthz").json() == {"status": "ok"}


def test_a_body_that_drips_in_is_answered_408_once_its_time_is_up(timing_out):
    """--request-timeout bounds the whole body, not each wait for its next part: a client
    sending a byte well within it each time held its connection for as long as it liked."""
    with connect(timing_out) as sock:
        # 40 bytes, a byte each 0.3 s: the whole body, and then some answer, in 12 s were
        # --request-timeout (0.5 s) a wait for each byte
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n")
        sent = 0
        while not select.select([sock], [], [], 0.3)[0] and sent < 40:
            sock.sendall(b"x")
            sent += 1
        answer = read_until_closed(sock)  # the server closed it: a hang would time out
    assert sent < 40
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"\r\nconnection: close\r\n" in answer.lower()
    assert answer.endswith(
        b'{"error":"the upload was not all in within 0.5 s (--request-timeout)"}'
    )
    assert timing_out.get("healthz").json() == {"status": "ok"}


def test_a_request_past_max_connections_is_answered_503(model_file, tmp_path):
    """Each connection may hold an upload of up to --max-upload-mb: past --max-connections a
    request is refused before its body is read, in JSON with Retry-After as a full queue is
    (uvicorn's own limit answered in plain text, with no Retry-After). A client that sends
    its whole body before it reads (httpx's AsyncClient), a photo of some MB, was reset
    instead: the connection was closed with the body unread."""
    server = start_server(model_file, tmp_path, "--max-connections", "2")
    held = [connect(server) for _ in range(2)]
    try:
        for sock in held:  # answered: the server has the connection; then an upload stalls
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n" + STALLED["raw"])
        size = 16 * 2**20  # more than the socket buffers hold, under --max-upload-mb
        for request in (
            STALLED["raw"],
            b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % size + bytes(size),
        ):
            with connect(server) as sock:
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n" + request)
                answer = read_until_closed(sock)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 "), answer
            headers = head.lower().split(b"\r\n")
            assert b"retry-after: 1" in headers and b"connection: close" in headers
            assert b"content-type: application/json" in headers
            assert json.loads(body) == {
                "error": "the server is busy (2 connections open); try again shortly"
            }
        held.pop().close()
        deadline = time.monotonic() + WAIT_S  # until the server sees that one closed
        while (status := server.get("healthz").status_code) == 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status == 200
    finally:
        for sock in held:
            sock.close()
        server.stop()


class _Transport:
    """The part of an asyncio transport the lingering close uses; ``write_eof`` raises where
    the client has gone (``shutdown``'s ENOTCONN)."""

    def __init__(self, client_gone: bool = False) -> None:
        self.closed = False
        self.client_gone = client_gone

    def is_closing(self):
        return self.closed

    def can_write_eof(self):
        return True

    def write_eof(self):
        if self.client_gone:
            raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN))

    def close(self):
        self.closed = True


def test_a_uvicorn_without_what_the_lingering_close_reads_closes_at_once():
    """The lingering close reads uvicorn's protocol (its request ``cycle``, ``more_body``,
    ``flow``): a release without them raised AttributeError from the transport's close, in
    the answer's send, and the connection was left open."""
    from resnetlab.serve.server import _LingeringClose, _protocol

    protocol = object.__new__(_protocol(1.0, 1))  # none of uvicorn's attributes set
    raw = _Transport()
    protocol.transport = _LingeringClose(raw, protocol)
    protocol.transport.close()
    assert raw.closed


def test_a_client_gone_as_the_lingering_close_starts_is_closed_at_once():
    """shutdown(SHUT_WR) on a socket whose client reset it raises (ENOTCONN, which macOS
    gives readily): raised from the transport's close, the answer's send failed with a
    traceback in the log."""
    from resnetlab.serve.server import _LingeringClose, _protocol

    protocol = object.__new__(_protocol(1.0, 1))
    protocol.cycle = types.SimpleNamespace(more_body=True)  # the body not all in
    protocol.flow = types.SimpleNamespace(resume_reading=lambda: None)
    raw = _Transport(client_gone=True)
    protocol.transport = _LingeringClose(raw, protocol)
    protocol.transport.close()
    assert raw.closed


def test_an_upload_with_damaged_exif_data_is_answered_without_a_warning_in_the_log(
    model_file, tmp_path
):
    """Pillow warns of EXIF data it reads past ("Corrupt EXIF data", "Truncated File Read");
    decoded in a worker thread, where read_image cannot turn it into one warning naming the
    file, it reached the server's log bare, naming no upload."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera"  # stored outside its IFD entry: its offset is what breaks
    data = exif.tobytes()
    entry = struct.pack(">HHL", 0x010F, 2, 7)
    at = data.index(entry) + len(entry)
    data = data[:at] + struct.pack(">L", 60_000) + data[at + 4 :]
    photo = tmp_path / "camera.jpg"
    Image.fromarray(colour_image(np.random.default_rng(0), "red", 8, 16)).save(photo, exif=data)
    server = start_server(model_file, tmp_path, "--device", "cpu")
    try:
        answer = server.post("predict", files={"image": ("camera.jpg", photo.read_bytes())})
        assert answer.status_code == 200, answer.text
        assert answer.json()["top"][0]["class"] == "red"
    finally:
        server.stop()
    log = (tmp_path / "stderr.txt").read_text()
    assert "Warning" not in log and "warning" not in log, log


def test_a_second_ctrl_c_while_stopping_quits_at_once_in_one_line(model_file, tmp_path):
    """uvicorn's forced exit logged a KeyboardInterrupt's and a CancelledError's tracebacks."""
    server = start_server(model_file, tmp_path)
    stderr = tmp_path / "stderr.txt"
    with connect(server) as sock:  # a request in flight keeps the server stopping
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n" + STALLED["raw"])
        server.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + WAIT_S
        while "Shutting down" not in stderr.read_text():
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.05)
        server.process.send_signal(signal.SIGINT)
        code = server.process.wait(WAIT_S)
    err = stderr.read_text()
    assert code == 130
    assert "Traceback" not in err and "Error" not in err, err
    assert err.splitlines()[-1] == (
        "interrupted again: stopped without answering the requests in flight"
    )
