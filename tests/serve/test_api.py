"""The JSON API of `resnetlab serve`, against a real server process."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import struct
import zlib

import pytest
from PIL import Image

import resnetlab
from resnetlab.cli import main
from resnetlab.serve.predictor import cam_available

from .conftest import COLOURS, SIZE

# Batching, folding BN and the matrix-product path for small maps round differently for
# different batch sizes, and how much depends on the CPU's kernels (AVX2, AVX-512, AMX) and
# threads: a probability may move by some float32 ulps, never more.
ATOL = 1e-5


def assert_same_top(answer: list[dict], expected: list[tuple[str, float]]) -> None:
    assert [t["class"] for t in answer] == [name for name, _ in expected]
    for got, (_, p) in zip(answer, expected, strict=True):
        assert got["probability"] == pytest.approx(p, abs=ATOL)


def png_bomb(width: int, height: int) -> bytes:
    """A valid grayscale PNG of width x height black pixels: a few hundred kB that PIL
    would decode to width * height * 3 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    compressor, row, parts = zlib.compressobj(9), bytes(width + 1), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def test_health_and_metadata(server, model_file):
    assert server.get("healthz").json() == {"status": "ok"}
    meta = server.get("metadata").json()
    assert meta["model"] == "resnet8" and meta["file"] == model_file.name
    assert meta["classes"] == list(COLOURS) and meta["num_classes"] == 3
    assert meta["input_size"] == [SIZE, SIZE]
    assert meta["preprocessing"]["mean"] == pytest.approx([0.45] * 3)
    assert meta["preprocessing"]["std"] == pytest.approx([0.25] * 3)
    assert meta["max_upload_bytes"] == 2**20
    assert meta["cam"] is cam_available()
    batching = meta["batching"]
    assert batching["max_batch"] == 16 and batching["max_queue"] == 256


def test_answers_equal_predict(server, model_file, image_files):
    """Every file, sent as the raw body and as a multipart upload, gets predict's numbers."""
    paths = list(image_files.values())
    expected = resnetlab.predict(model_file, paths, top_k=3)
    for path, prediction in zip(paths, expected, strict=True):
        data = path.read_bytes()
        raw = server.post("predict", content=data, headers={"Content-Type": "image/png"})
        assert raw.status_code == 200, raw.text
        assert raw.json()["image"] == "upload"
        assert_same_top(raw.json()["top"], prediction.top)
        form = server.post("predict", files={"image": (path.name, data)})
        assert form.status_code == 200, form.text
        assert form.json()["image"] == path.name
        assert_same_top(form.json()["top"], prediction.top)
        climbing = server.post("predict", files={"image": (f"../../etc/{path.name}", data)})
        assert climbing.json()["image"] == path.name  # the name, not the folders sent with it
    # The colour pictures are told apart: the model is not answering one class for all.
    assert {p.label for p in expected[:6]} == set(COLOURS)


def test_an_image_put_as_curl_t_sends_it_gets_predicts_numbers(server, model_file, image_files):
    """`curl -T photo.jpg URL/predict`, as TorchServe's examples upload, sends PUT."""
    path = image_files["blue.jpg"]
    (expected,) = resnetlab.predict(model_file, [path], top_k=3)
    answer = server.put("predict", content=path.read_bytes())
    assert answer.status_code == 200, answer.text
    assert answer.json()["image"] == "upload"
    assert_same_top(answer.json()["top"], expected.top)


def test_top_k(server, model_file, image_files):
    path = image_files["gray.png"]
    (full,) = resnetlab.predict(model_file, [path], top_k=3)
    one = server.post("predict", params={"top_k": 1}, content=path.read_bytes()).json()
    assert_same_top(one["top"], full.top[:1])
    many = server.post("predict", params={"top_k": 50}, content=path.read_bytes()).json()
    assert_same_top(many["top"], full.top)  # all three classes, no more
    for bad in ("0", "-1", "two", "\u00b2", "000"):  # a superscript two passes str.isdigit()
        answer = server.post("predict", params={"top_k": bad}, content=path.read_bytes())
        assert answer.status_code == 400 and "top_k" in answer.json()["error"]
    # Past int()'s 4,300 digits: all the classes, as for 50, not a 500 (ValueError).
    for huge in ("9" * 5000, "0" * 5000 + "2"):
        answer = server.post("predict", params={"top_k": huge}, content=path.read_bytes())
        assert answer.status_code == 200, answer.json()
    assert_same_top(answer.json()["top"], full.top[:2])  # 000...2 is 2
    answer = server.post("predict", params={"top_k": "9" * 5000}, content=path.read_bytes())
    assert_same_top(answer.json()["top"], full.top)


def test_options_as_form_fields(server, model_file, image_files):
    """``curl -F image=@photo.jpg -F top_k=1`` asks as ``?top_k=1`` does; the query string wins
    where both say."""
    path = image_files["gray.png"]
    (full,) = resnetlab.predict(model_file, [path], top_k=3)
    upload = {"image": (path.name, path.read_bytes())}
    one = server.post("predict", files=upload, data={"top_k": "1"}).json()
    assert_same_top(one["top"], full.top[:1])
    two = server.post("predict", files=upload, data={"top_k": "1"}, params={"top_k": 2}).json()
    assert_same_top(two["top"], full.top[:2])
    bad = server.post("predict", files=upload, data={"top_k": "two"})
    assert (
        bad.status_code == 400
        and bad.json()["error"] == "top_k must be a positive whole number, got 'two'"
    )
    bad = server.post("predict", files=upload, data={"cam": "yes"})
    assert bad.status_code == 400 and "cam must be 0 or 1" in bad.json()["error"]
    # A file's contents in a text field (curl -F top_k=<photo.jpg, meaning @): one line,
    # its start and its length, not the whole of it back.
    text = "x" * 100_000
    for field, words in (
        ("top_k", "top_k must be a positive whole number"),
        ("cam", "cam must be 0 or 1"),
    ):
        bad = server.post("predict", files=upload, data={field: text})
        assert bad.status_code == 400
        assert bad.json()["error"] == f"{words}, got {'x' * 40!r}... (100,000 characters)"
    bad = server.post("predict", files=upload, data={"CAM": "YES"}, params={"cam": "YES"})
    assert (
        bad.json()["error"]
        == "unknown option 'CAM': did you mean cam? /predict takes top_k and cam"
    )
    bad = server.post("predict", files=upload, params={"cam": "YES"})
    assert bad.json()["error"] == "cam must be 0 or 1, got 'YES'"  # as given, not lowercased


def test_unknown_option_refused(server, image_files):
    """A misspelt option (``?topk=1``) is refused, naming the one meant, not answered with the
    default top-k as if it had not been sent."""
    path = image_files["gray.png"]
    bad = server.post("predict", params={"topk": 1}, content=path.read_bytes())
    assert bad.status_code == 400
    assert bad.json()["error"] == (
        "unknown option 'topk': did you mean top_k? /predict takes top_k and cam"
    )
    upload = {"image": (path.name, path.read_bytes())}
    bad = server.post("predict", files=upload, data={"size": "64"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "unknown option 'size': /predict takes top_k and cam"


def _bad_inputs(image_files) -> list[tuple[str, dict, int, str]]:
    jpeg = image_files["red.jpg"].read_bytes()
    return [
        ("empty body", {"content": b""}, 400, "no image"),
        (
            "empty file in a form",
            {"files": {"image": ("IMG_1.jpg", b"")}},
            400,
            "the upload IMG_1.jpg is empty (0 bytes); send a file that holds an image",
        ),
        ("multipart without a file", {"files": {"note": (None, b"hello")}}, 400, "no file"),
        (
            "multipart with two files",
            {"files": [("a", ("a.jpg", jpeg)), ("b", ("b.jpg", jpeg))]},
            400,
            "the multipart form is refused (Too many files. Maximum number of files is 1); "
            "send one image as a file field, e.g. curl -F image=@photo.jpg",
        ),
        (
            "multipart without its boundary",
            {"content": jpeg, "headers": {"Content-Type": "multipart/form-data"}},
            400,
            "the multipart form is refused (Missing boundary in multipart); send one image",
        ),
        # The reason in brackets is the parser's: Starlette's words, or with older Starlette
        # python-multipart's own ("Did not find boundary character 121 at index 4").
        (
            "multipart with a wrong boundary",
            {
                "content": b"--y\r\n" + jpeg + b"\r\n--y--\r\n",
                "headers": {"Content-Type": "multipart/form-data; boundary=x"},
            },
            400,
            "the multipart form is refused (",
        ),
        ("text", {"content": b"name,value\nx,1\n" * 20}, 415, "not an image"),
        ("text as a file", {"files": {"image": ("notes.txt", b"hello")}}, 415, "notes.txt"),
        (  # a name of a page, said by its start and its end, not whole
            "text with a long name",
            {"files": {"image": ("n" * 900 + ".txt", b"hello")}},
            415,
            f"the upload {'n' * 50}...{'n' * 16}.txt is not",
        ),
        ("truncated JPEG", {"content": jpeg[: len(jpeg) // 2]}, 422, "truncated"),
        ("JPEG header only", {"content": jpeg[:40]}, 422, "truncated"),
        (
            "HEIC photo named .jpg",
            {"files": {"image": ("IMG_1.jpg", b"\x00\x00\x00\x18ftypheic" + bytes(100))}},
            415,
            "holds a HEIC photo, whatever its name says, which Pillow cannot read; convert it",
        ),
        (
            "HEIC photo as named",
            {"files": {"image": ("IMG_1.HEIC", b"\x00\x00\x00\x18ftypheic" + bytes(100))}},
            415,
            "the upload IMG_1.HEIC: HEIC photos cannot be read here; convert it to JPEG or PNG",
        ),
        ("decompression bomb", {"content": png_bomb(12_000, 12_000)}, 413, "12000x12000"),
        ("2 MB upload", {"content": b"\xff" * (2 * 2**20)}, 413, "1 MB"),
        ("2 MB chunked upload", {"content": iter([b"\xff" * 2**16] * 32)}, 413, "1 MB"),
    ]


def test_bad_input_gets_a_json_error_and_the_server_goes_on(server, model_file, image_files):
    """Each answered, and nothing but the server's own log lines written: python-multipart
    wrote a line of its own for a wrong boundary, and PIL warned of the decompression bomb
    its 413 refuses."""
    good = image_files["green.png"]
    stderr = server.running.log_dir / "stderr.txt"
    logged = len(stderr.read_text())
    (expected,) = resnetlab.predict(model_file, [good], top_k=3)
    for what, request, status, phrase in _bad_inputs(image_files):
        answer = server.post("predict", **request)
        assert answer.status_code == status, f"{what}: {answer.text}"
        assert answer.headers["content-type"] == "application/json", what
        assert phrase in answer.json()["error"], what
        after = server.post("predict", content=good.read_bytes())
        assert after.status_code == 200, f"after {what}: {after.text}"
        assert_same_top(after.json()["top"], expected.top)
    assert server.process.poll() is None
    unprefixed = [
        line
        for line in stderr.read_text()[logged:].splitlines()
        if not re.match(r"(INFO|WARNING|ERROR): ", line)
    ]
    assert unprefixed == []


def test_an_image_sent_with_curl_d_is_told_to_use_data_binary(server, image_files):
    """`curl -d @photo.jpg` sends the file as a urlencoded form without its line breaks."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for name in ("red.jpg", "green.png"):
        data = image_files[name].read_bytes()
        stripped = data.replace(b"\n", b"").replace(b"\r", b"")
        answer = server.post("predict", content=stripped, headers=form)
        assert answer.status_code in (415, 422), name
        assert answer.json()["error"].endswith(
            "; curl -d drops a file's line breaks: send it with curl --data-binary @FILE "
            "or -F image=@FILE"
        ), name
        # As `curl --data-binary` sends it (the same type), the file is read.
        assert server.post("predict", content=data, headers=form).status_code == 200, name
    # Line breaks kept: a file that is no image, with no word of curl -d.
    answer = server.post("predict", content=b"name,value\nx,1\n" * 20, headers=form)
    assert answer.status_code == 415 and "curl -d" not in answer.json()["error"]


def test_a_file_name_sent_without_curls_at_is_told_to_add_it(server):
    """`curl --data-binary photo.jpg` and `curl -F image=photo.jpg` send the name as text."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    fix = (
        "holds the text 'my hand.jpg', a file's name, not the file: curl sends a file with @ "
        "before its name, "
    )
    not_image = "the upload is not an image file that can be read (JPEG, PNG, WebP, GIF, BMP, "
    for body in (b"my hand.jpg", b"image=@my hand.jpg\n"):  # --data-binary, -d image=@...
        answer = server.post("predict", content=body, headers=form)
        assert answer.status_code == 415
        assert answer.json()["error"] == (
            f"{not_image}TIFF...); it {fix}--data-binary @my hand.jpg or -F image=@my hand.jpg"
        )
    answer = server.post("predict", files={"photo": (None, "my hand.jpg")})
    assert answer.status_code == 400
    assert answer.json()["error"] == (
        f"the multipart form has no file; its field 'photo' {fix}-F photo=@my hand.jpg"
    )
    # Text that names no image is told nothing of the kind.
    answer = server.post("predict", content=b"hello.txt", headers=form)
    assert answer.status_code == 415 and "a file's name" not in answer.json()["error"]


def test_an_image_sent_in_json_is_told_to_send_the_file(server, image_files):
    """Base64 in a JSON field, as other serving APIs take it (``requests.post(url,
    json=...)``): refused, saying what /predict takes instead."""
    photo = base64.b64encode(image_files["red.jpg"].read_bytes()).decode("ascii")
    for kind in ("application/json", "application/json; charset=utf-8"):
        answer = server.post(
            "predict", content=json.dumps({"image": photo}), headers={"Content-Type": kind}
        )
        assert answer.status_code == 415
        assert answer.json()["error"] == (
            "the upload is not an image file that can be read (JPEG, PNG, WebP, GIF, BMP, "
            "TIFF...); /predict takes the image file itself, not JSON (base64 or other): send "
            "it with curl --data-binary @FILE or -F image=@FILE"
        )


def test_other_errors_are_json_too(server):
    lost = server.get("predicts")  # a mistyped address: the ones that exist, named
    assert lost.status_code == 404
    assert lost.json() == {
        "error": "no such address '/predicts'; this server answers GET / (the page), "
        "GET /healthz, GET /metadata and POST /predict"
    }
    assert server.get("static/nothing.js").status_code == 404
    slash = server.post("predict/", content=b"x")  # a redirect, which curl left unanswered
    assert slash.status_code == 404 and slash.json()["error"].startswith(
        "no such address '/predict/'; this server answers GET / (the page)"
    )
    how = server.get("predict")  # what a browser opening /predict shows
    assert how.status_code == 405 and how.headers["allow"] == "POST, PUT"
    assert how.json() == {
        "error": f"/predict takes an image by POST: curl -F image=@photo.jpg {server.url}predict; "
        f"the page at {server.url} sends one from a browser"
    }
    answer = server.post("predict", params={"cam": "maybe"}, content=b"x")
    assert answer.status_code == 400 and "cam" in answer.json()["error"]


def test_an_image_sent_to_the_page_is_told_where_it_goes(server, image_files):
    """`curl -F image=@photo.jpg http://HOST:PORT/`, the address the server prints, was
    answered "Method Not Allowed" and no more."""
    with image_files["red.png"].open("rb") as f:
        answer = server.post("", files={"image": ("red.png", f, "image/png")})
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD"
    assert answer.json() == {
        "error": f"{server.url} is the page, which takes no upload; send the image to "
        f"/predict: curl -F image=@photo.jpg {server.url}predict"
    }
    assert server.put("", content=b"x").json() == answer.json()
    assert server.get("").status_code == 200


def test_a_method_predict_does_not_take_is_told_the_ones_it_does(model_file):
    """DELETE /predict (or HEAD, PATCH) is answered 405 with ``Allow: POST, PUT``, as GET is;
    not ``Allow: GET``, which would send the client to the one method that is refused too."""
    from fastapi.testclient import TestClient

    from resnetlab.serve import Predictor, create_app

    client = TestClient(create_app(Predictor(resnetlab.load_model(model_file))))
    for method in ("DELETE", "HEAD", "PATCH"):
        answer = client.request(method, "/predict")
        assert answer.status_code == 405, method
        assert sorted(answer.headers["allow"].split(", ")) == ["POST", "PUT"], method


def test_outputs_nan_or_inf_are_a_500_in_the_words_predict_uses(model_file, image_files):
    """A model whose activations overflow float16 (--precision fp16) gives NaN: the answer
    was a 200 with "probability": null for each class, where predict names the cause."""
    import torch
    from fastapi.testclient import TestClient

    from resnetlab.serve import Predictor, create_app

    class Overflows(Predictor):
        def __call__(self, images: torch.Tensor) -> torch.Tensor:
            return torch.full((len(images), len(COLOURS)), float("nan"))

    predictor = Overflows(resnetlab.load_model(model_file), precision="fp16")
    with TestClient(create_app(predictor)) as client, image_files["red.png"].open("rb") as f:
        answer = client.post("/predict", files={"image": ("red.png", f, "image/png")})
    assert answer.status_code == 500
    assert answer.json() == {
        "error": "the model's outputs are NaN or inf for red.png; in fp16 its activations "
        "overflowed (float16 holds at most 65,504); give precision='fp32', or bf16, which has "
        "float32's range"  # the Predictor's keyword, as it was made in Python
    }


@pytest.mark.skipif(cam_available(), reason="this build draws class activation maps")
def test_cam_without_the_explain_module_is_501(server, image_files):
    answer = server.post("predict", params={"cam": 1}, content=image_files["red.png"].read_bytes())
    assert answer.status_code == 501
    assert "not available" in answer.json()["error"]


@pytest.mark.skipif(not cam_available(), reason="this build has no resnetlab.explain")
def test_cam_is_a_png_data_url(server, model_file, image_files):
    path = image_files["red.png"]
    answer = server.post("predict", params={"cam": 1}, content=path.read_bytes())
    assert answer.status_code == 200, answer.text
    (expected,) = resnetlab.predict(model_file, [path], top_k=3)
    assert_same_top(answer.json()["top"], expected.top)
    prefix = "data:image/png;base64,"
    assert answer.json()["cam"].startswith(prefix)
    png = Image.open(io.BytesIO(base64.b64decode(answer.json()["cam"][len(prefix) :])))
    assert png.format == "PNG" and png.width > png.height  # the image beside its map
    # A bare ?cam asks for the map too; cam=0 does not.
    assert "cam" in server.post("predict?cam", content=path.read_bytes()).json()
    assert "cam" not in server.post("predict?cam=0", content=path.read_bytes()).json()


def test_the_page_and_its_files(server):
    page = server.get("")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'accept="image/*"' in page.text and "capture=" in page.text
    for asset in ("static/app.js", "static/style.css"):
        assert server.get(asset).status_code == 200, asset
    # HEAD, as `curl -I` and uptime checks ask: the GET's status and type, no body.
    for path in ("", "healthz", "metadata", "static/app.js"):
        head, get = server.head(path), server.get(path)
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path


def test_serve_errors_are_one_line(model_file, tmp_path, capsys):
    # --port 0: the port is bound before the model loads, and 8000 may be taken here
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not really")
    assert main(["serve", str(onnx), "--port", "0"]) == 2
    assert ".onnx" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing.safetensors"), "--port", "0"]) == 2
    assert "model file not found" in capsys.readouterr().err
    for flags in (
        ["--max-batch", "0"],
        ["--max-wait-ms", "-1"],
        ["--port", "70000"],
        ["--max-connections", "0"],
    ):
        assert main(["serve", str(model_file), *flags]) == 2
        assert flags[0] in capsys.readouterr().err
    for flags in (
        ["--max-wait-ms", "inf"],
        ["--max-upload-mb", "nan"],
        ["--max-upload-mb", "inf"],
        ["--request-timeout", "0"],
        ["--request-timeout", "nan"],
    ):
        assert main(["serve", str(model_file), *flags]) == 2  # not a traceback, nor a hang
        err = capsys.readouterr().err
        assert f"error: {flags[0]} must be a finite" in err and "Traceback" not in err


def test_a_busy_port_is_one_line(model_file, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(model_file), "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another "
            "--port (--port 0 picks a free one) or --host\n"
        )
        # A file it cannot serve is the first thing to fix, named before the port.
        export = model_file.with_suffix(".pt2")
        export.write_bytes(b"")
        assert main(["serve", str(export), "--port", str(port)]) == 2
        assert capsys.readouterr().err.startswith(f"error: {export} is ")
        missing = model_file.with_name("missing.safetensors")
        assert main(["serve", str(missing), "--port", str(port)]) == 2
        assert capsys.readouterr().err.startswith(f"error: model file not found: {missing}")


@pytest.mark.parametrize("lan", ["192.0.2.7", None])
def test_on_all_addresses_the_network_address_is_printed(model_file, monkeypatch, capsys, lan):
    """--host 0.0.0.0 (to try it from a phone): http://0.0.0.0:PORT/ opens nowhere, so the
    first line gives this machine's address, and the next its address on its network, where
    it has one."""
    from resnetlab.serve import server

    class NoServer:  # uvicorn left out: its Config would set up logging in this process
        def __init__(self, _config) -> None:
            pass

        def run(self, sockets) -> None:
            sockets[0].close()

    monkeypatch.setattr(server, "_lan_address", lambda _family: lan)
    monkeypatch.setattr(server.uvicorn, "Config", lambda *_args, **_kwargs: None)
    monkeypatch.setattr(server, "_Server", NoServer)
    server.serve(model_file, host="0.0.0.0", port=0)
    lines = capsys.readouterr().out.splitlines()
    port = lines[0].split("http://127.0.0.1:", 1)[1].split("/", 1)[0]
    assert lines[0].endswith(
        f" at http://127.0.0.1:{port}/ on this machine (listening on 0.0.0.0, all its addresses)"
    )
    network = [f"from another device on this network: http://{lan}:{port}/"] if lan else []
    assert lines[1:] == network
    # The helper that starts a server for scripts and tests finds the address in that line.
    from resnetlab.serve.process import served_url

    assert served_url("\n".join(lines)) == f"http://127.0.0.1:{port}/"
    assert served_url("serving m.safetensors at http://127.0.0.1:8000/\n") == (
        "http://127.0.0.1:8000/"
    )


def test_the_first_line_says_a_reduced_precision(model_file, monkeypatch, capsys):
    from resnetlab.serve import server

    class NoServer:  # as above: uvicorn left out
        def __init__(self, _config) -> None:
            pass

        def run(self, sockets) -> None:
            sockets[0].close()

    monkeypatch.setattr(server.uvicorn, "Config", lambda *_args, **_kwargs: None)
    monkeypatch.setattr(server, "_Server", NoServer)
    server.serve(model_file, port=0, precision="bf16")
    assert ", bf16 autocast) at http://127.0.0.1:" in capsys.readouterr().out
    server.serve(model_file, port=0)
    assert "autocast" not in capsys.readouterr().out


def test_the_address_printed_takes_connections(model_file, monkeypatch, capsys):
    """A script that reads the first line and connects at once is not refused: the socket
    listens before the line is printed, and connections wait for uvicorn to accept them."""
    import socket

    from resnetlab.serve import server

    class Connects:  # uvicorn left out, as above: connect where the line says, then close
        def __init__(self, _config) -> None:
            pass

        def run(self, sockets) -> None:
            port = int(capsys.readouterr().out.split("http://127.0.0.1:", 1)[1].split("/")[0])
            try:
                socket.create_connection(("127.0.0.1", port), timeout=10).close()
            finally:
                sockets[0].close()

    monkeypatch.setattr(server.uvicorn, "Config", lambda *_args, **_kwargs: None)
    monkeypatch.setattr(server, "_Server", Connects)
    server.serve(model_file, port=0)


def test_without_the_extra_the_command_says_what_to_install(model_file, monkeypatch, capsys):
    import sys

    for name in [
        m for m in sys.modules if m == "resnetlab.serve" or m.startswith("resnetlab.serve.")
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", str(model_file)]) == 2
    err = capsys.readouterr().err
    assert "fastapi" in err and "pip install 'resnetlab[serve]'" in err and err.count("\n") == 1


@pytest.mark.skipif(not cam_available(), reason="this build has no resnetlab.explain")
def test_a_map_too_coarse_to_point_at_a_place_comes_with_a_note(tmp_path, image_files):
    from fastapi.testclient import TestClient

    from resnetlab.serve import Predictor, create_app

    path = tmp_path / "r18.safetensors"  # ResNet-18 at 64 px: layer4 is 2x2
    resnetlab.save_model(resnetlab.create_model("resnet18", num_classes=3), path, input_size=64)
    with TestClient(create_app(Predictor(resnetlab.load_model(path)))) as client:
        image = image_files["red.png"].read_bytes()
        answer = client.post("/predict", params={"cam": 1}, content=image).json()
    assert answer["cam"].startswith("data:image/png;base64,")
    assert answer["cam_note"] == (
        "layer4's feature map is 2x2 for images of 64x64 pixels: each cell covers a quarter "
        "of the image or more"
    )


async def asgi_post(app, receive, headers: tuple = ()) -> list[dict]:
    """What ``app`` sends for a POST /predict whose body comes from ``receive``, called as an
    ASGI server calls it; an exception it raises is what the server would log."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("content_type", [b"image/png", b"multipart/form-data; boundary=x"])
def test_a_client_gone_mid_upload_is_no_server_error(model_file, content_type):
    """A client that disconnects before its upload is complete is not logged as the server's
    error (uvicorn logs whatever the app raises, with a traceback)."""
    from resnetlab.serve import Predictor, create_app

    app = create_app(Predictor(resnetlab.load_model(model_file)))
    part = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    messages = iter(
        [
            {"type": "http.request", "body": part + b"\x89PNG\r\n", "more_body": True},
            {"type": "http.disconnect"},
        ]
    )

    async def receive() -> dict:
        return next(messages)

    sent = asyncio.run(asgi_post(app, receive, headers=((b"content-type", content_type),)))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {
        "error": "the client disconnected before its upload was complete"
    }


def test_the_readme_synopsis_names_every_serve_option():
    """The README's one line for `resnetlab serve` left out --request-timeout and
    --max-connections, which the Serve section speaks of."""
    from resnetlab.cli import _subcommands, build_parser

    from ..conftest import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    (line,) = re.findall(r"^resnetlab serve MODEL_FILE .*$", readme, re.MULTILINE)
    serve = _subcommands(build_parser("serve"))["serve"]
    options = {a.option_strings[-1] for a in serve._actions if a.option_strings} - {"--help"}
    assert set(re.findall(r"\[(--[a-z-]+)", line.split(" #")[0])) == options


def test_an_upload_limit_too_large_to_count_in_bytes_is_one_line(model_file, capsys):
    """--max-upload-mb 1e308 is a finite number of MB but no number of bytes: it ended in a
    traceback (OverflowError) once the model had loaded."""
    assert main(["serve", str(model_file), "--port", "0", "--max-upload-mb", "1e308"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --max-upload-mb 1e+308 is too large to count in bytes; give a size in MB, "
        "as 20 (the default)\n"
    )


def test_another_machines_address_is_named_so(model_file, capsys):
    """--host with an address this machine does not have was told to choose another --port,
    which cannot help."""
    host = "203.0.113.7"  # TEST-NET-3: no machine's own
    assert main(["serve", str(model_file), "--host", host, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --host {host}: not an address of this machine (")
    assert err.endswith("); give 127.0.0.1 (this machine only) or 0.0.0.0 (all its addresses)\n")
