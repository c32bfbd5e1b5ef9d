"""Running the app with uvicorn on a socket bound here, so a busy port or a bad address is a
one-line error and ``--port 0`` picks a free port that is then printed."""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import sys

import uvicorn

from ..errors import ResnetlabError
from .app import create_app
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
    precision: str = "fp32",
    log_level: str = "info",
) -> None:
    """Serve a model file over HTTP until interrupted (Ctrl+C or SIGTERM).

    Prints ``serving ... at http://HOST:PORT/`` once it can take requests' connections.

    Args:
        model_file: a model file written by resnetlab.
        host: the address to listen on; the default answers only this machine.
        port: the TCP port; 0 picks a free one.
        device: ``auto``, ``cpu``, ``cuda``...
        max_batch, max_wait_ms, max_queue: request batching (see ``Batcher``).
        max_upload_mb: largest upload accepted, in MiB.
        top_k: classes per answer unless the request says (``?top_k=N``).
        precision: ``fp32``, or ``bf16``/``fp16`` autocast (faster where the hardware has
            that arithmetic; probabilities within a few thousandths, a few hundredths at worst).
        log_level: uvicorn's log level.
    """
    _check_limits(port, max_batch, max_wait_ms, max_queue, max_upload_mb, top_k)
    sock = _listen(host, port)  # first: a busy port is reported before the model loads
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
    )
    address = sock.getsockname()
    shown = f"[{address[0]}]" if sock.family == socket.AF_INET6 else address[0]
    meta = predictor.meta
    reduced = f", {precision} autocast" if precision != "fp32" else ""  # answers move a little
    print(
        f"serving {model_file} ({meta.model}, {meta.num_classes} classes, "
        f"{meta.input_size}x{meta.input_size} input{reduced}) at http://{shown}:{address[1]}/",
        flush=True,
    )
    # 0.0.0.0 is no address a phone can open: name the one this machine has on its network.
    if ipaddress.ip_address(address[0]).is_unspecified and (lan := _lan_address(sock.family)):
        shown_lan = f"[{lan}]" if sock.family == socket.AF_INET6 else lan
        print(f"from another device on this network: http://{shown_lan}:{address[1]}/", flush=True)
    if not ipaddress.ip_address(address[0]).is_loopback:
        print(
            f"warning: listening on {address[0]}: anyone who can reach this machine can use "
            "the model (there is no authentication)",
            file=sys.stderr,
        )
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


def _check_limits(port, max_batch, max_wait_ms, max_queue, max_upload_mb, top_k) -> None:
    if not 0 <= port <= 65535:
        raise ResnetlabError(f"--port must be between 0 and 65535, got {port}")
    for flag, value in (("--max-batch", max_batch), ("--max-queue", max_queue), ("--top-k", top_k)):
        if value < 1:
            raise ResnetlabError(f"{flag} must be at least 1, got {value}")
    # NaN passes every comparison below, and an infinite wait would hold a lone request
    # for ever: both are refused as the numbers they are not.
    if not (math.isfinite(max_wait_ms) and max_wait_ms >= 0):
        raise ResnetlabError(
            f"--max-wait-ms must be a finite number of at least 0, got {max_wait_ms}"
        )
    if not (math.isfinite(max_upload_mb) and max_upload_mb > 0):
        raise ResnetlabError(
            f"--max-upload-mb must be a finite positive number, got {max_upload_mb}"
        )


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
        raise ResnetlabError(
            f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host"
        ) from None
    return sock
