"""The web app: ``POST /predict``, ``GET /`` (the page), ``GET /healthz``, ``GET /metadata``.

Every error is JSON, ``{"error": "..."}``, with a 4xx status for what the client sent (see
``Predictor.decode``), 501 for what this build cannot do, 503 with ``Retry-After`` when the
queue is full; nothing a client sends stops the server.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import math
import os
import sys
from collections.abc import Mapping
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath

import anyio
import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..data.decode import CONVERT_FIRST, IMAGE_EXTENSIONS, usable_cpus
from ..engine.auto import count_of
from ..engine.inference import nonfinite_outputs_cause
from ..engine.predict import Prediction, top_classes
from ..errors import ResnetlabError, count_argument, finite_number, shown
from .batching import Batcher, QueueFull, Stopped, log
from .predictor import Predictor, RequestError

STATIC = Path(__file__).parent / "static"
RETRY_AFTER_S = 1  # what a refused client is told to wait; a batch takes well under that
OPTIONS = ("top_k", "cam")  # what /predict reads from the query string or the form's fields
MAX_WAIT_MS = 60_000  # --max-wait-ms above this holds a lone request past any client's patience
ADDRESSES = "this server answers GET / (the page), GET /healthz, GET /metadata and POST /predict"
STOPPED = "the server stopped before answering this request; send it again once it is back"
SEND_WHOLE = "send it with curl --data-binary @FILE or -F image=@FILE"
CURL_D_FIX = f"curl -d drops a file's line breaks: {SEND_WHOLE}"
# What other serving APIs take (base64 in a JSON field) is no image here.
JSON_FIX = f"/predict takes the image file itself, not JSON (base64 or other): {SEND_WHOLE}"


class BodyTooLarge(Exception):
    """The request body passed the upload limit."""


class BodyTimedOut(Exception):
    """The request body was not all in within the time allowed."""


class BodyLimit:
    """Refuse request bodies over ``max_bytes``: at once when ``Content-Length`` says so, else
    as soon as the body read so far passes the limit (chunked uploads); and bodies not all in
    within ``timeout_s`` of the request's headers (a client that stalls mid-upload, or sends
    a byte now and then, would otherwise hold its connection and the body read so far for
    ever: uvicorn has no read timeout)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.max_bytes:
            return await _too_large(self.max_bytes)(scope, receive, send)
        seen, complete = 0, False
        loop = asyncio.get_running_loop()
        # One deadline for the whole body, not a wait for each part: a wait for each part
        # is met by a client that sends a byte just before it runs out.
        deadline = loop.time() + self.timeout_s

        async def limited() -> Message:
            nonlocal seen, complete
            if complete:  # no more body: the app waits for the client to disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except asyncio.TimeoutError:
                raise BodyTimedOut from None
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge
            complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)


class AnswerWhenStopped:
    """Tell a request the server cancels as it stops so, in JSON: uvicorn cancels those still
    running when its graceful shutdown runs out of time, and would answer each with a
    plain-text 500 and log a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if started:  # half an answer sent: nothing to do but let the connection close
                raise
            await _error(STOPPED, 503)(scope, receive, send)


def _too_large(max_bytes: int) -> JSONResponse:
    # --max-upload-mb 0.01 is 10,485 bytes: 0.01, not 0.00999928; 0.0001 is 9.92e-05, not 0.
    mb = max_bytes / 2**20
    mb = round(mb, 3) if mb >= 0.001 else float(f"{mb:.3g}")
    return _error(f"the upload is larger than the limit of {mb:g} MB (--max-upload-mb)", 413)


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def busy(why: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The answer to a request refused for want of room (``why``: what is full): 503, with
    ``Retry-After``."""
    return _error(
        f"the server is busy ({why}); try again shortly",
        503,
        {"Retry-After": str(RETRY_AFTER_S), **(headers or {})},
    )


def create_app(
    predictor: Predictor,
    *,
    max_batch: int = 16,
    max_wait_ms: float = 2.0,
    max_queue: int = 256,
    max_upload_mb: float = 20.0,
    top_k: int = 3,
    request_timeout: float = 30.0,
) -> FastAPI:
    """The ASGI app serving ``predictor``.

    Args:
        predictor: the model (``load_predictor``).
        max_batch, max_wait_ms, max_queue: request batching (see ``Batcher``).
        max_upload_mb: largest request body accepted, in MiB.
        top_k: classes in an answer when the request does not say (``?top_k=N``).
        request_timeout: longest time, in seconds, for a request's whole body to come once
            its headers are in; a client whose body is not all in by then is answered 408
            and disconnected.
    """
    if not isinstance(predictor, Predictor):  # a path or a loaded model failed at each request
        raise ResnetlabError(
            "create_app takes a Predictor: resnetlab.serve.load_predictor('model.safetensors'), "
            f"not a {type(predictor).__name__}"
        )
    check_limits(max_batch, max_wait_ms, max_queue, max_upload_mb, top_k, request_timeout)
    batcher = Batcher(predictor, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue)
    max_bytes = int(max_upload_mb * 2**20)
    app = _new_app(batcher, max_bytes, request_timeout)
    _add_error_handlers(app, max_bytes, max_queue, request_timeout)
    _add_page_and_status_routes(app, predictor, batcher, top_k, max_bytes)
    _add_predict_routes(app, predictor, batcher, top_k)
    return app


def _new_app(batcher: Batcher, max_bytes: int, request_timeout: float) -> FastAPI:
    """The app without its routes: ``batcher`` started and stopped with the server, request
    bodies limited (``BodyLimit``), requests cancelled at shutdown answered
    (``AnswerWhenStopped``), and the page's static files."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="resnetlab",
        lifespan=lifespan,
        docs_url=None,  # the interactive docs load their scripts from a CDN
        redoc_url=None,
        openapi_url=None,
        # /predict/ answered with a bare redirect, which curl follows with no body and
        # exit status 0: named as an address the server does not answer (404) instead.
        redirect_slashes=False,
    )
    app.add_middleware(BodyLimit, max_bytes=max_bytes, timeout_s=request_timeout)
    app.add_middleware(AnswerWhenStopped)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _add_page_and_status_routes(
    app: FastAPI, predictor: Predictor, batcher: Batcher, top_k: int, max_bytes: int
) -> None:
    """``GET /`` (the page), ``GET /healthz`` and ``GET /metadata``."""

    # HEAD as well, as Starlette's own routes and the static files answer it: what
    # `curl -I` and uptime checks send.
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> JSONResponse:
        # Not ok where /predict would fail: an app run without its lifespan events, or
        # stopped; an uptime check then sees what a client would.
        if not batcher.running:
            return JSONResponse({"status": "unavailable", "error": batcher.why_not_running}, 503)
        return JSONResponse({"status": "ok"})

    @app.api_route("/metadata", methods=["GET", "HEAD"])
    async def metadata() -> dict:
        return {
            **predictor.describe(),
            "cam": predictor.cam_problem() is None,
            "top_k": top_k,
            "max_upload_bytes": max_bytes,
            "batching": batcher.stats(),
        }


def _add_predict_routes(app: FastAPI, predictor: Predictor, batcher: Batcher, top_k: int) -> None:
    """``POST /predict`` (and ``PUT``), and the answers to an image sent another way: ``GET
    /predict`` and ``POST /``."""
    # Decoding runs in worker threads; this many at once bounds the memory big images take.
    decoders = anyio.CapacityLimiter(max(2, usable_cpus()))

    # PUT too: TorchServe's examples upload with `curl -T photo.jpg`, which sends PUT.
    @app.api_route("/predict", methods=["POST", "PUT"])
    async def predict(request: Request) -> dict:
        data, name, fields = await _read_upload(request)
        k, cam = _options({**fields, **request.query_params}, top_k)
        if cam:
            predictor.require_cam()  # before the work, not after
        batcher.refuse_if_full()  # as is an image that would wait in a full queue
        pixels = await _decoded(request, data, name, predictor, decoders)
        probs = await batcher.submit(torch.from_numpy(pixels))
        _refuse_nonfinite(probs, name, predictor.precision)
        (top,) = top_classes(probs[None], predictor.names, k)
        answer = Prediction(name or "upload", top).to_dict()
        if cam:
            answer |= await _cam_fields(predictor, batcher, pixels)
        return answer

    # After POST and PUT: a method neither route takes (DELETE) is answered with the first
    # route of its path's methods, in Allow.
    app.add_api_route("/predict", _how_to_predict, methods=["GET"], include_in_schema=False)
    # An image sent to the page's address (the server prints that one): where it goes.
    app.add_api_route("/", _not_the_page, methods=["POST", "PUT"], include_in_schema=False)


async def _decoded(
    request: Request,
    data: bytes,
    name: str | None,
    predictor: Predictor,
    decoders: anyio.CapacityLimiter,
) -> np.ndarray:
    """The upload's pixels (``Predictor.decode``, in a worker thread); a body that is no
    image is told how to send one where the request shows how it went wrong
    (``_how_to_send``)."""
    try:
        return await anyio.to_thread.run_sync(predictor.decode, data, name, limiter=decoders)
    except RequestError as e:
        if e.status in (415, 422) and (fix := _how_to_send(request, data)):
            raise RequestError(f"{e}; {fix}", e.status) from None
        raise


def _refuse_nonfinite(probs: torch.Tensor, name: str | None, precision: str) -> None:
    """A 500 for outputs that are NaN or inf, with their likely cause
    (``nonfinite_outputs_cause``)."""
    if not bool(probs.isfinite().all()):  # JSON has no NaN: the answer said null
        problem = f"the model's outputs are NaN or inf for {name or 'the upload'}; "
        problem += nonfinite_outputs_cause(precision)
        log.warning("%s", problem)  # the server's to fix: its log says so too
        raise RequestError(problem, 500)


async def _cam_fields(predictor: Predictor, batcher: Batcher, pixels: np.ndarray) -> dict[str, str]:
    """The class activation map of an answer, as a PNG data URL, and the note on it if any."""
    png, note = await batcher.run(predictor.cam_png, pixels)
    fields = {"cam": "data:image/png;base64," + base64.b64encode(png).decode("ascii")}
    if note:  # a map too coarse to point at a place
        fields["cam_note"] = note
    return fields


def check_limits(max_batch, max_wait_ms, max_queue, max_upload_mb, top_k, request_timeout) -> None:
    """One line, naming the ``serve`` flag, for a limit that is out of range or no number."""
    for flag, value in (("--max-batch", max_batch), ("--max-queue", max_queue), ("--top-k", top_k)):
        count_argument(value, flag)
    # NaN passes every comparison below, and an infinite wait would hold a lone request
    # for ever: both are refused as the numbers they are not.
    if not (finite_number(max_wait_ms) and max_wait_ms >= 0):
        raise ResnetlabError(
            f"--max-wait-ms must be a finite number of at least 0, got {shown(max_wait_ms)}"
        )
    if max_wait_ms > MAX_WAIT_MS:  # a lone request waits this long for others to join it
        raise ResnetlabError(
            f"--max-wait-ms {max_wait_ms:g} holds a lone request that long for others to batch "
            f"with; give at most {MAX_WAIT_MS:,} (a minute): a few milliseconds batch requests "
            "that come together"
        )
    if not (finite_number(max_upload_mb) and max_upload_mb > 0):
        raise ResnetlabError(
            f"--max-upload-mb must be a finite positive number, got {shown(max_upload_mb)}"
        )
    if not math.isfinite(max_upload_mb * 2**20):  # 1e308 MB is no count of bytes
        raise ResnetlabError(
            f"--max-upload-mb {max_upload_mb:g} is too large to count in bytes; give a size in "
            "MB, as 20 (the default)"
        )
    if not (finite_number(request_timeout) and request_timeout > 0):
        raise ResnetlabError(
            f"--request-timeout must be a finite positive number of seconds, got "
            f"{shown(request_timeout)}"
        )


def _add_error_handlers(
    app: FastAPI, max_bytes: int, max_queue: int, request_timeout: float
) -> None:
    """Every error as ``{"error": "..."}`` with its status."""

    @app.exception_handler(RequestError)
    async def request_error(_request: Request, e: RequestError) -> JSONResponse:
        return _error(str(e), e.status)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(_request: Request, _e: BodyTooLarge) -> JSONResponse:
        return _too_large(max_bytes)

    @app.exception_handler(BodyTimedOut)
    async def body_timed_out(_request: Request, _e: BodyTimedOut) -> JSONResponse:
        # Connection: close, as the rest of the body may still come: uvicorn then closes it.
        return _error(
            f"the upload was not all in within {request_timeout:g} s (--request-timeout)",
            408,
            {"Connection": "close"},
        )

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_request: Request, _e: ClientDisconnect) -> JSONResponse:
        # Nothing wrong with the server, and no one to read the answer: handled here, as the
        # handler of every other exception re-raises it for the server to log.
        return _error("the client disconnected before its upload was complete", 400)

    @app.exception_handler(Stopped)
    async def stopped(_request: Request, _e: Stopped) -> JSONResponse:
        return _error(STOPPED, 503)

    @app.exception_handler(QueueFull)
    async def queue_full(_request: Request, _e: QueueFull) -> JSONResponse:
        return busy(f"{count_of(max_queue, 'image')} waiting")

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, e: Exception) -> JSONResponse:
        # A bug or a failed batch: this request fails (logged with its traceback), the
        # server goes on.
        return _error(f"internal error ({type(e).__name__}: {e})", 500)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        if e.status_code == 404 and e.detail == "Not Found":  # Starlette's, for no route
            return _error(f"no such address {_given(request.url.path)}; {ADDRESSES}", 404)
        return _error(str(e.detail), e.status_code, e.headers)


def _options(query: Mapping[str, str], default_top_k: int) -> tuple[int, bool]:
    """``top_k=N`` and ``cam=1``, from the query string or a multipart form's text fields
    (``curl -F top_k=5``); any other name is refused, as a misspelt option (``topk=5``)
    would otherwise be answered with the defaults."""
    for name in query:
        if name not in OPTIONS:
            close = difflib.get_close_matches(name.lower(), OPTIONS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            raise RequestError(
                f"unknown option {_given(name)}: {hint}/predict takes {' and '.join(OPTIONS)}",
                400,
            )
    text = query.get("top_k", str(default_top_k))
    digits = text.lstrip("0")
    # isdigit() alone also passes '²' and other digits int() does not read
    if not (text.isascii() and text.isdigit()) or not digits:
        raise RequestError(f"top_k must be a positive whole number, got {_given(text)}", 400)
    # More than any model has classes: all of them (int() refuses 4,300 digits and more).
    top_k = int(digits) if len(digits) < 19 else sys.maxsize
    cam = query.get("cam", "0")
    if cam.lower() not in ("0", "1", "true", "false", ""):
        raise RequestError(f"cam must be 0 or 1, got {_given(cam)}", 400)
    return top_k, cam.lower() in ("1", "true", "")  # a bare ?cam asks for it


def _given(text: str, limit: int = 40) -> str:
    """A value the client gave, as an error shows it: whole where short, else its start and
    its length (a form field that holds a file, ``-F top_k=<photo.jpg``, ran to a page)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


async def _how_to_predict(request: Request) -> JSONResponse:
    """``GET /predict``, as a browser opening it asks: how to send an image, and where the
    page is."""
    base = str(request.base_url)
    return _error(
        f"/predict takes an image by POST: curl -F image=@photo.jpg {base}predict; "
        f"the page at {base} sends one from a browser",
        405,
        {"Allow": "POST, PUT"},
    )


async def _not_the_page(request: Request) -> JSONResponse:
    """``POST /`` (``curl -F image=@photo.jpg http://HOST:PORT/``): the address to send to."""
    base = str(request.base_url)
    return _error(
        f"{base} is the page, which takes no upload; send the image to /predict: "
        f"curl -F image=@photo.jpg {base}predict",
        405,
        {"Allow": "GET, HEAD"},
    )


def _how_to_send(request: Request, data: bytes) -> str | None:
    """For a body that is no image, how to send one where the request shows how it went
    wrong, else None: JSON (typed so, as ``requests.post(url, json=...)`` sends it), or
    ``curl -d @photo.jpg``'s urlencoded form, its line-break bytes (0x0A, 0x0D) gone, where
    a PNG's signature holds both and a photo of a few kB all but surely does."""
    if name := _file_name_sent(data):
        return _name_not_file(name, f"--data-binary @{name} or -F image=@{name}")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        return JSON_FIX
    if kind == "application/x-www-form-urlencoded" and b"\n" not in data and b"\r" not in data:
        return CURL_D_FIX
    return None


def _file_name_sent(data: bytes) -> str | None:
    """The file name that ``data`` is, where curl was given a file's name without its
    ``@`` (``--data-binary photo.jpg``, ``-F image=photo.jpg``, ``-d image=@photo.jpg``),
    which sends the name as text: a short line ending in an image's suffix; else None."""
    if len(data) > 1024:
        return None
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    name = text.rpartition("=")[2].lstrip("@")  # -d image=@photo.jpg sends all of it
    suffix = os.path.splitext(name)[1].lower()
    if "\n" in text or not (suffix in IMAGE_EXTENSIONS or suffix in CONVERT_FIRST):
        return None
    return name


def _name_not_file(name: str, send: str, holder: str = "it") -> str:
    return (
        f"{holder} holds the text '{name}', a file's name, not the file: curl sends a file "
        f"with @ before its name, {send}"
    )


async def _read_upload(request: Request) -> tuple[bytes, str | None, dict[str, str]]:
    """The image's bytes, its file name and the form's text fields: the first file of a
    multipart form, else the whole body (no name, no fields)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await request.body(), None, {}
    fix = "send one image as a file field, e.g. curl -F image=@photo.jpg"
    try:
        async with request.form(max_files=1, max_fields=16) as form:
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            if not files:
                for field, value in form.multi_items():
                    if name := _file_name_sent(value.encode()):  # -F image=photo.jpg
                        fix = _name_not_file(name, f"-F {field}=@{name}", f"its field '{field}'")
                        break
                raise RequestError(f"the multipart form has no file; {fix}", 400)
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            # The name without folders a client may have sent with it (../x.jpg, C:\x.jpg).
            name = PurePosixPath((files[0].filename or "").replace("\\", "/")).name
            if len(name) > 80:  # said in errors: its start and its suffix, not a page
                name = f"{name[:50]}...{name[-20:]}"
            return await files[0].read(), name or None, fields
    except HTTPException as e:  # Starlette's words: two files, no boundary, a broken part...
        why = str(e.detail).rstrip(".")
        raise RequestError(f"the multipart form is refused ({why}); {fix}", 400) from None
    except _form_parser_error() as e:  # the parser's own, which older Starlette let through
        raise RequestError(f"the multipart form is refused ({e}); {fix}", 400) from None


def _form_parser_error() -> type[Exception]:
    """python-multipart's base error, under its import name or older releases' one."""
    try:
        from python_multipart.exceptions import FormParserError
    except ImportError:
        from multipart.exceptions import FormParserError
    return FormParserError
