"""Running the app with uvicorn on a socket bound here, so a busy port or a bad address is a
one-line error and ``--port 0`` picks a free port that is then printed."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import signal
import socket
import sys
import warnings

import uvicorn
from PIL import Image
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from ..data.decode import PILLOW_DAMAGE_WARNINGS
from ..engine.auto import count_of
from ..errors import ResnetlabError, count_argument
from ..models.files import ModelMeta
from .app import busy, check_limits, create_app
from .predictor import load_predictor


def serve(
    model_file: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    max_batch: int = 16,
    max_wait_ms: float = 2.0,
    max_queue: int = 256,
    max_upload_mb: float = 20.0,
    top_k: int = 3,
    request_timeout: float = 30.0,
    max_connections: int | None = None,
    precision: str = "fp32",
    log_level: str = "info",
) -> None:
    """Serve a model file over HTTP until interrupted (Ctrl+C or SIGTERM).

    Prints ``serving ... at http://HOST:PORT/`` once it can take requests' connections (for
    a ``host`` of all addresses, 0.0.0.0, this machine's own: 127.0.0.1, and its address on
    its network on a line of its own).

    Args:
        model_file: a model file written by resnetlab.
        host: the address to listen on; the default answers only this machine.
        port: the TCP port; 0 picks a free one.
        device: ``auto``, ``cpu``, ``cuda``...
        max_batch, max_wait_ms, max_queue: request batching (see ``Batcher``).
        max_upload_mb: largest upload accepted, in MiB.
        top_k: classes per answer unless the request says (``?top_k=N``).
        request_timeout: longest time, in seconds, for a request's headers to come, and then
            for its whole body; then the connection is closed (a body not all in is answered
            408 first).
        max_connections: most connections open at once; a request on one more is answered
            503 with ``Retry-After``, as one past ``max_queue`` is, before its body is read.
            None: ``max_queue + max_batch``, a connection for each image the queue and a
            running batch hold.
        precision: ``fp32``, or ``bf16``/``fp16`` autocast (faster where the hardware has
            that arithmetic; probabilities within a few thousandths, a few hundredths at worst).
        log_level: uvicorn's log level.
    """
    _check_limits(port, max_batch, max_wait_ms, max_queue, max_upload_mb, top_k, request_timeout)
    if max_connections is None:
        max_connections = max_queue + max_batch
    count_argument(max_connections, "--max-connections")
    _check_model_file(model_file)  # a file it cannot serve is named before a busy port
    sock = _listen(host, port)  # then: a busy port is reported before the model loads
    try:
        predictor = load_predictor(model_file, device=device, precision=precision)
    except BaseException:
        sock.close()
        raise
    app = create_app(
        predictor,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        max_upload_mb=max_upload_mb,
        top_k=top_k,
        request_timeout=request_timeout,
    )
    # Listening from here, with the model loaded, rather than once uvicorn starts: a client
    # that connects on reading the line below waits to be accepted instead of being refused.
    sock.listen()
    _say_where(sock, model_file, predictor.meta, precision)
    _quiet_logs()
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
        http=_protocol(request_timeout, max_connections),
    )
    _Server(config).run(sockets=[sock])


def _say_where(
    sock: socket.socket, model_file: str | os.PathLike, meta: ModelMeta, precision: str
) -> None:
    """The line naming the model and the address it is served at (for all addresses, this
    machine's own and, on a line of its own, its address on its network), and a warning
    where the server can be reached from other machines."""
    address = sock.getsockname()
    v6 = sock.family == socket.AF_INET6
    reduced = f", {precision} autocast" if precision != "fp32" else ""  # answers move a little
    # 0.0.0.0 (or ::) is no address to give a browser: the first line gives this machine's
    # own, and the next the one it has on its network, for a phone.
    everywhere = ipaddress.ip_address(address[0]).is_unspecified
    local = ("::1" if v6 else "127.0.0.1") if everywhere else address[0]
    where = f" on this machine (listening on {address[0]}, all its addresses)" if everywhere else ""
    print(
        f"serving {model_file} ({meta.model}, {meta.num_classes} classes, "
        f"{meta.input_size}x{meta.input_size} input{reduced}) at "
        f"{_url(local, address[1], v6)}{where}",
        flush=True,
    )
    if everywhere and (lan := _lan_address(sock.family)):
        print(f"from another device on this network: {_url(lan, address[1], v6)}", flush=True)
    if not ipaddress.ip_address(address[0]).is_loopback:
        print(
            f"warning: listening on {address[0]}: anyone who can reach this machine can use "
            "the model (there is no authentication)",
            file=sys.stderr,
        )


def _quiet_logs() -> None:
    """Lines the server's log need not hold: each is an answer the client already has."""
    # python-multipart logs why it refuses a malformed form, to a logger with no handler, so
    # Python printed it bare on stderr; the client's 400 says so, the server's log need not.
    for name in ("python_multipart", "multipart"):  # its import name, and older releases'
        logging.getLogger(name).addHandler(logging.NullHandler())
    # Each image over the decompression-bomb limit is answered 413 from its header; PIL's
    # warning on it, which decoding in worker threads cannot silence as predict does, would
    # add a line to the log for each such upload.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    # Pillow's words on an upload's damaged metadata, which it reads past: the image is
    # answered all the same, and a bare line naming no upload would tell the log nothing
    # (read_image names the file in its warning only where it decodes on a main thread).
    category, module = PILLOW_DAMAGE_WARNINGS
    warnings.filterwarnings("ignore", category=category, module=module)


def _protocol(timeout_s: float, max_connections: int) -> type[asyncio.Protocol]:
    """``_GuardedHTTP`` for a server whose request timeout is ``timeout_s`` and whose
    connections are at most ``max_connections``."""
    settings = {"timeout_s": timeout_s, "max_connections": max_connections}
    return type("GuardedHTTP", (_GuardedHTTP,), settings)


class _GuardedHTTP(AutoHTTPProtocol):  # the class uvicorn would use, whichever it is
    """uvicorn's HTTP protocol (h11 or httptools, as uvicorn picks), with a time limit on a
    request's headers (``_expect_headers``), a limit on the connections open answered as
    the app says it is busy (``_limited``), and a lingering close after an answer given
    before the request's body was all in (``linger``). ``_protocol`` gives it its settings."""

    timeout_s: float
    max_connections: int

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.app = self._limited(self.app)
        self._lingering: asyncio.TimerHandle | None = None

    def _limited(self, app: ASGIApp) -> ASGIApp:
        """``app``, answering a request on a connection past ``max_connections`` 503, before
        its body is read, in JSON with ``Retry-After`` as the app says it is busy. (uvicorn's
        own limit, ``limit_concurrency``, answers in plain text, with no Retry-After, and
        takes no other answer.) As uvicorn's does, it counts the requests still running as
        well, whose connections may have closed."""

        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            # This request's connection and its task are counted among them.
            if max(len(self.connections), len(self.tasks)) <= self.max_connections:
                return await app(scope, receive, send)
            open_ = f"{count_of(self.max_connections, 'connection')} open"
            self.logger.warning(
                "a request was refused: %s, the most --max-connections allows", open_
            )
            # Connection: close, as the body, unread, may still come: uvicorn closes it.
            refused = busy(open_, {"Connection": "close"})
            await refused(scope, receive, send)

        return limited

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._expect_headers()
        self.transport = _LingeringClose(self.transport, self)

    def linger(self) -> bool:
        """Start a lingering close where the request's body is not all in (False: close
        at once, also where uvicorn's protocol lacks what this reads of it: ``cycle``,
        its ``more_body``, ``flow``; raised there, the answer's send failed and the
        connection stayed open).

        A connection closed after an answer given before the request's body was all in (the
        503 of ``_limited``, a 408) is closed as web servers close it, lingering: the answer
        and the end of what the server sends go out, and what the client still sends of its
        body is read and dropped until it closes its side, for ``timeout_s`` at most. Closed
        at once, with the body's bytes unread, the connection is reset, and a client still
        sending (a photo of a few MB) saw the reset instead of its answer."""
        transport = self.transport.transport
        cycle, flow = getattr(self, "cycle", None), getattr(self, "flow", None)
        if not getattr(cycle, "more_body", False) or flow is None:
            return False
        if not transport.can_write_eof():
            return False
        try:  # after the answer: the client reads it, then the end
            transport.write_eof()
        except OSError:  # the client gone meanwhile (shutdown's ENOTCONN: macOS)
            return False
        flow.resume_reading()  # paused where the unread body filled uvicorn's buffer
        self._lingering = self.loop.call_later(self.timeout_s, transport.close)
        return True

    def data_received(self, data: bytes) -> None:
        if self._lingering is None:  # else the rest of a body answered already: dropped
            super().data_received(data)

    def on_response_complete(self) -> None:  # the next request's headers are due
        super().on_response_complete()
        self._headers_due.cancel()
        self._expect_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_due.cancel()
        if self._lingering is not None:
            self._lingering.cancel()
        super().connection_lost(exc)

    def _expect_headers(self) -> None:
        """Give the next request ``timeout_s`` for its headers: uvicorn would wait for ever
        for a client that connects and sends nothing, or part of its headers (its keep-alive
        timeout ends at the first byte), and each such connection counts against
        --max-connections."""
        self._headers_due = self.loop.call_later(self.timeout_s, self._no_headers)

    def _no_headers(self) -> None:
        if self.cycle is None or self.cycle.response_complete:  # no request under way
            # At once, not lingering: the time for a body answered already is up too.
            self.transport.transport.close()


class _LingeringClose:
    """A connection's transport, as uvicorn's protocol uses it, whose ``close`` lingers
    where the protocol says so (``_GuardedHTTP.linger``); a second ``close`` (the server
    stopping, the request timeout) closes it at once."""

    def __init__(self, transport: asyncio.Transport, protocol: asyncio.Protocol) -> None:
        self.transport = transport
        self.protocol = protocol
        self.lingering = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self.transport.is_closing()

    def close(self) -> None:
        if self.lingering or self.transport.is_closing() or not self.protocol.linger():
            self.transport.close()
        else:
            self.lingering = True


class _Server(uvicorn.Server):
    """uvicorn's server, where a second Ctrl-C while it stops quits at once with one line:
    uvicorn's own forced exit leaves the app's lifespan to be cancelled, which logs a
    KeyboardInterrupt's and a CancelledError's tracebacks."""

    def handle_exit(self, sig: int, frame: object) -> None:
        if self.should_exit and sig == signal.SIGINT:
            print(
                "interrupted again: stopped without answering the requests in flight",
                file=sys.stderr,
                flush=True,
            )
            os._exit(130)  # the requests in flight are given up, as uvicorn's force quit does
        super().handle_exit(sig, frame)


def _url(host: str, port: int, v6: bool) -> str:
    return f"http://[{host}]:{port}/" if v6 else f"http://{host}:{port}/"


def _check_model_file(model_file: str | os.PathLike) -> None:
    """What a model file's header says is wrong with it (missing, another format, no
    metadata), read without its weights; an ONNX file is checked when it loads."""
    from pathlib import Path

    from ..errors import path_argument
    from ..models.files import read_model_meta

    path = path_argument(model_file, "the model file")
    if Path(path).suffix.lower() != ".onnx":
        read_model_meta(path)


def _check_limits(
    port, max_batch, max_wait_ms, max_queue, max_upload_mb, top_k, request_timeout
) -> None:
    if count_argument(port, "--port", minimum=0) > 65535:
        raise ResnetlabError(f"--port must be between 0 and 65535, got {port}")
    check_limits(max_batch, max_wait_ms, max_queue, max_upload_mb, top_k, request_timeout)


def _lan_address(family: socket.AddressFamily) -> str | None:
    """This machine's address on the network its traffic leaves by, or None (no network).
    Connecting a UDP socket picks the route and sends nothing."""
    probe = ("10.254.254.254", 1) if family == socket.AF_INET else ("fd00::1", 1)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect(probe)
            address = udp.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)``."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ResnetlabError(f"--host {host}: not an address of this machine ({e})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRNOTAVAIL:  # another machine's address: no port will do
            raise ResnetlabError(
                f"--host {host}: not an address of this machine ({e.strerror}); give "
                "127.0.0.1 (this machine only) or 0.0.0.0 (all its addresses)"
            ) from None
        raise ResnetlabError(
            f"cannot listen on {host}:{port} ({e.strerror}); choose another --port (--port 0 "
            "picks a free one) or --host"
        ) from None
    return sock
