import argparse
import importlib
import math
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.analysis import count_parameters
from resnetlab.cli import COMMANDS, build_parser, main
from resnetlab.data.decode import read_image

from .conftest import PROJECT_ROOT


def test_readme_model_table_matches_the_registry():
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(
        r"^\| `(\w+)` \| ([\d,]+) \| (\d+) \| (\d+) \| [^|]+ \| ([^|]+) \|$", text, re.MULTILINE
    )
    table = {name: (int(p.replace(",", "")), int(k), int(s), src) for name, p, k, s, src in rows}
    assert list(table) == resnetlab.list_models()
    for name, (params, num_classes, input_size, source) in table.items():
        info = resnetlab.model_info(name)
        assert (info.num_classes, info.input_size, info.source) == (
            num_classes,
            input_size,
            source.strip(),
        )
        with torch.device("meta"):  # shapes only
            assert count_parameters(resnetlab.create_model(name))[0] == params


def _client_decoding() -> str:
    """The README's ONNX client code, from opening the photo to the resize."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("**A client**") :]
    block = block[block.index("```python") : block.index("\n```\n", block.index("```python"))]
    start = block.index('image = Image.open("photo.jpg")')
    scaled = block[block.index("scaled = ") : block.index("\n", block.index("scaled = "))]
    return scaled + "\n" + block[start : block.index("\n\n", start)]


@pytest.mark.parametrize("fraction", [1.0, 0.875])
@pytest.mark.parametrize("resize", ["crop", "squash"])
def test_readme_client_decodes_as_predict_does(resize, fraction, tmp_path):
    from PIL import Image, ImageOps

    rng = np.random.default_rng(0)
    files = []
    for i, (w, h) in enumerate([(640, 480), (480, 640), (1200, 900), (333, 517), (100, 30)]):
        path = tmp_path / f"{i}.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6 if i % 2 else 1  # every other one turned a quarter by its EXIF tag
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            path, exif=exif.tobytes()
        )
        files.append(path)
    for mode in ("RGBA", "LA"):
        path = tmp_path / f"{mode}.png"
        bands = rng.integers(0, 255, (200, 300, len(mode)), dtype=np.uint8)
        Image.fromarray(bands, mode).save(path)
        files.append(path)
    # Grayscale beyond 8 bits, which Pillow's own conversion clips: 16-bit (I;16), 32-bit
    # integers of 16-bit values (I), floats from 0 to 1 and from 0 to 255 (F).
    gray = rng.integers(0, 256, (90, 120)).astype(np.float32)
    for name, image in [
        ("16.png", Image.fromarray((gray * 257).astype(np.uint16))),
        ("32.tif", Image.fromarray((gray * 257).astype(np.int32), "I")),
        ("float1.tif", Image.fromarray(gray / 255, "F")),
        ("float255.tif", Image.fromarray(gray + 0.4, "F")),
    ]:
        image.save(tmp_path / name)
        files.append(tmp_path / name)
    code = _client_decoding()
    for path in files:
        for size in (32, 64, 224):
            crop = resize == "crop"
            scope = {"Image": Image, "ImageOps": ImageOps, "np": np, "size": size, "crop": crop}
            scope |= {"math": math, "meta": {"crop_fraction": str(fraction)}}  # ONNX's strings
            exec(code.replace('"photo.jpg"', repr(str(path))), scope)
            expected = read_image(path, size, resize, fraction)
            assert np.array_equal(np.asarray(scope["image"]), expected), (path.name, size)


def test_readme_plain_pytorch_code_gives_what_predict_gives(tmp_path, monkeypatch):
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("from resnetlab.engine.predict import read_input\n\nmeta = model.meta")
    code = text[text.rindex("```python", 0, start) + len("```python") : text.index("```", start)]
    rng = np.random.default_rng(0)
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=3),
        tmp_path / "model.safetensors",
        input_size=16,
        class_names=["a", "b", "c"],
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
    )
    model = resnetlab.load_model(tmp_path / "model.safetensors")
    monkeypatch.chdir(tmp_path)
    scope = {"model": model}
    exec(code, scope)
    (expected,) = resnetlab.predict(model, "photo.jpg", top_k=3, device="cpu")
    got = dict(zip(model.meta.class_names, scope["probabilities"].tolist(), strict=True))
    assert [got[name] for name, _ in expected.top] == pytest.approx(
        [p for _, p in expected.top], abs=1e-5
    )


def _readme() -> str:
    return (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    text = _readme()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _command_parser(words: list[str]) -> tuple[argparse.ArgumentParser | None, list[str]]:
    """The parser of ``resnetlab WORDS...``'s (sub)command, and the words after its names;
    None for ``bench train|infer|...``, whose names are checked here."""
    parser, rest = build_parser(words[0]), words
    while rest and not rest[0].startswith(("-", "[")):
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers or not re.fullmatch(r"[a-z|-]+", rest[0]):
            break
        for name in rest[0].split("|"):
            assert name in subparsers[0].choices, f"resnetlab {' '.join(words)}: {name}"
        if "|" in rest[0]:
            return None, []
        parser, rest = subparsers[0].choices[rest[0]], rest[1:]
    return parser, rest


def test_readme_command_line_synopsis_matches_the_parsers():
    block = re.search(r"```bash\n(.*?)```", _section("Command line"), re.DOTALL)[1]
    lines = [line.split(" #")[0] for line in block.splitlines()]
    assert {line.split()[1] for line in lines} == {name for name, _, _ in COMMANDS}
    for line in lines:
        parser, rest = _command_parser(line.split()[1:])
        if parser is None:
            continue
        options = {o: a for a in parser._actions for o in a.option_strings}
        for i, word in enumerate(rest):
            flag = re.match(r"\[?(--[a-z][a-z0-9-]*)", word)
            if flag is None:
                continue
            assert flag[1] in options, f"{line.split()[:3]}: {flag[1]}"
            action = options[flag[1]]
            value = rest[i + 1].strip("[]") if i + 1 < len(rest) else ""
            if "|" in value and action.choices is not None:  # the choices, in any order
                assert set(value.split("|")) == set(action.choices), (line, flag[1])
            elif re.fullmatch(r"\d+(\.\d+)?", value) and action.default is not None:
                # the default, where the parser holds it (not resolved later)
                assert float(value) == float(action.default), (line, flag[1])


def test_readme_command_line_errors_are_printed_as_shown(tmp_path, monkeypatch, capsys):
    block = re.search(r"```text\n(.*?)```", _section("Command line"), re.DOTALL)[1]
    examples = re.findall(r"^\$ resnetlab (.*)\n((?:(?!\$ ).*\n?)*)", block, re.MULTILINE)
    assert len(examples) >= 5
    monkeypatch.chdir(tmp_path)
    for argv, expected in examples:
        words = shlex.split(argv)
        for word in words:  # the files the examples' mistakes are near
            if word.endswith(".safetensor"):
                Path(word + "s").parent.mkdir(parents=True, exist_ok=True)
                Path(word + "s").touch()
            elif word.endswith("/"):
                Path(word).mkdir(exist_ok=True)
        try:
            status = main(words)
        except SystemExit as stop:  # a misused flag: argparse's way out
            status = stop.code
        assert status == 2, argv
        assert capsys.readouterr().err == expected.rstrip("\n") + "\n", argv


def test_readme_links_lead_to_headings_and_files():
    text = re.sub(r"```.*?```", "", _readme(), flags=re.DOTALL)  # a `# comment` is no heading
    slugs = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.*)$", text, re.MULTILINE)
    }
    anchors = re.findall(r"\]\(#([^)]+)\)", text)
    assert anchors and set(anchors) <= slugs, set(anchors) - slugs
    for target in re.findall(r"\]\((?!#|https?:)([^)#]+)", text):
        assert (PROJECT_ROOT / target).exists(), target
    # The files it names in its prose (the table's rows are records of past commands).
    prose = "\n".join(line for line in text.splitlines() if not line.startswith("|"))
    named = re.findall(r"`((?:benchmarks|docs|src|tests)/[^` ]+)`(?!, since removed)", prose)
    assert len(named) > 10
    for path in named:
        assert (PROJECT_ROOT / path).exists(), path


def test_readme_command_lines_parse():
    """Every ``resnetlab ...`` line of the README's shell blocks is a command line the
    parser takes (the synopsis of the Command line section, with its [options], aside)."""
    from resnetlab.cli import _subcommands, build_parser

    parser = build_parser()
    known, parsers = {"--version"}, [parser]
    while parsers:  # every option of every command, spelt out: argparse takes abbreviations
        p = parsers.pop()
        known |= {o for a in p._actions for o in a.option_strings}
        parsers += _subcommands(p).values()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", _readme(), re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split("  #")[0].split(" # ")[0])
            if words[:1] == ["resnetlab"] and not any(w.startswith("[") for w in words):
                lines.append(words[1:])
    assert len(lines) > 30
    for words in lines:
        try:
            parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"the README's `resnetlab {' '.join(words)}` does not parse")
        assert [w for w in words if w.startswith("--") and w.split("=")[0] not in known] == []


def test_readme_training_options_are_train_options():
    """The options the Training section names are ``resnetlab train``'s (those of the
    other programs it quotes, torchrun and the benchmark script, aside)."""
    from resnetlab.cli import _subcommands, build_parser

    train = _subcommands(build_parser("train"))["train"]
    known = {o for a in train._actions for o in a.option_strings}
    text = _section("Training")
    text = re.sub(r"`python\s[^`]*`|^torchrun .*$", "", text, flags=re.MULTILINE)
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))
    assert len(named) > 40
    assert sorted(named - known) == []


def test_readme_size_of_the_cam_module():
    """The README gives the size of explain/cam.py, which grows with its fixes."""
    (said,) = re.findall(r"one module of about (\d+) lines", _readme())
    path = PROJECT_ROOT / "src" / "resnetlab" / "explain" / "cam.py"
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert abs(lines - int(said)) <= 0.15 * lines, f"cam.py has {lines} lines"


def test_readme_run_folder_table_names_the_files_a_run_writes():
    from resnetlab.engine.train import RUN_FILES

    text = _section("Training")
    table = text[text.index("**The run folder**") :]
    table = table[: table.index("\n\n", table.index("| file | what |"))]
    named = set()
    for cell in re.findall(r"^\| ([^|]+) \|", table, re.MULTILINE):
        named |= set(re.findall(r"`([^`]+)`", cell))
    assert named == {*RUN_FILES, "tensorboard/"}


def test_readme_metrics_columns_and_auto_line_are_what_a_run_writes():
    from resnetlab.engine.auto import apply_auto
    from resnetlab.engine.config import TrainConfig
    from resnetlab.engine.report import METRIC_FIELDS

    text = _section("Training")
    (columns,) = re.findall(r"^\| `metrics.csv` \| `([^`]+)`", text, re.MULTILINE)
    assert columns == ",".join(METRIC_FIELDS)
    # The auto recipe's line for the SIGNS training file (1,080 images at 64 px, ResNet-18).
    (said,) = re.findall(r"^recipe auto: 1,080 images.*$", text, re.MULTILINE)
    config = TrainConfig(recipe="auto", model="resnet18")
    assert apply_auto(config, num_images=1080, image_size=64, num_classes=6)[1] == said


def test_readme_own_photos_names_the_default_model_and_the_settings_the_log_advises():
    """`train --data photos/` without a model trains the default one at its own size, which
    for photos is small: the README says which, and the settings the log names for photos."""
    from resnetlab.data.folders import SHRUNK_NOTE
    from resnetlab.engine.config import TrainConfig
    from resnetlab.engine.train import _with_advice
    from resnetlab.errors import command_line

    text = " ".join(_section("Your own photos").split())
    depth, size, side = re.search(
        r"trains the default model, ResNet-(\d+) .*? from scratch at (\d+)x(\d+)", text
    ).groups()
    default = TrainConfig(data="photos").model
    assert f"resnet{depth}" == default
    assert int(size) == int(side) == resnetlab.model_info(default).input_size
    with command_line():
        advice = _with_advice(f"{SHRUNK_NOTE} 900x1200, shrunk to {size}x{size}", int(size))
    (advised,) = re.findall(r"e\.g\. (--model \S+ --input-size \d+)", advice)
    assert f"`{advised}`" in text


def test_readme_serve_defaults_are_the_commands():
    from resnetlab.cli import _subcommands, build_parser

    serve = _subcommands(build_parser("serve"))["serve"]
    defaults = {a.option_strings[0]: a.default for a in serve._actions if a.option_strings}
    text = _section("Serve")
    said = dict(re.findall(r"`(--max-[a-z-]+)` \((\d+)\)", text))
    assert said.keys() == {"--max-batch", "--max-wait-ms", "--max-queue", "--max-upload-mb"}
    assert {flag: float(n) for flag, n in said.items()} == {f: defaults[f] for f in said}
    assert "(default `--top-k`, 3)" in text and defaults["--top-k"] == 3


def test_readme_numbers_are_the_codes():
    """The limits and margins the README states, against the constants that set them."""
    from resnetlab import data, options
    from resnetlab.engine import calibrate, threads
    from resnetlab.export import exporter
    from resnetlab.models import files

    text = " ".join(_readme().split())
    facts = [
        ("`num_classes` from 1 to 100,000", files.MAX_CLASSES, 100_000),
        ("`input_size` from 8 to 2,048", options.INPUT_SIZES, "from 8 to 2,048 pixels"),
        ("three `std` values from 1e-6 to 1,000", files.MIN_STD, 1e-6),
        ("runs the file on up to 32 of the images", exporter.CHECK_IMAGES, 32),
        ("without `--data` on 8 generated ones", exporter.GENERATED_IMAGES, 8),
        ("may be 1e-4 (fp32) or 1e-2 (fp16)", exporter.TOLERANCE, {"fp32": 1e-4, "fp16": 1e-2}),
        ("refuses a file more than 2 points worse", exporter.MAX_INT8_DROP, 0.02),
        ("take at most 4 GiB", data.STREAM_ABOVE_BYTES, 4 * 2**30),
        ("more than 5% unreadable", data.MAX_UNREADABLE_FRACTION, 0.05),
        (
            "(5 rounds per convolution, 7 for the whole step)",
            (calibrate.REPEATS, calibrate.STEP_REPEATS),
            (5, 7),
        ),
        ("matrix product is 10% faster", calibrate.CONV_MARGIN, 0.10),
        ("channels-last unless NCHW is 5% faster", calibrate.LAYOUT_MARGIN, 0.05),
        ("unless bf16 is 10% faster", calibrate.PRECISION_MARGIN, 0.10),
        ("unless fewer threads are 25% faster", calibrate.THREAD_MARGIN, 0.25),
        ("where it would exceed 40 GFLOP", calibrate.STEP_FLOPS_BUDGET, 40e9),
        ("a load average above 1.5 per core", calibrate.BUSY_LOAD, 1.5),
        ("as many images as 500 timed steps", calibrate.MEASURE_MIN_STEPS, 500),
        ("Every 5 s of training", threads.WINDOW_SECONDS, 5),
        ("tried again after a minute of training", threads.RETRY_SECONDS, 60),
        ("at most 16 minutes", threads.MAX_RETRY_SECONDS, 16 * 60),
    ]
    for phrase, value, expected in facts:
        assert phrase in text, phrase
        assert value == expected, phrase


def test_readme_data_loader_code_runs_as_written(shared_data, monkeypatch):
    text = _readme()
    start = text.index("from resnetlab.data import load_dataset, make_loader")
    code = text[start : text.index("```", start)]
    monkeypatch.chdir(PROJECT_ROOT)  # its paths are the project root's ../shared/data
    scope: dict = {}
    exec(code, scope)
    data, x, y = scope["data"], scope["x"], scope["y"]
    assert (len(data.train), len(data.val)) == (1080, 120)  # as its comments say
    assert x.shape == (32, 3, 64, 64) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_readme_export_python_code_runs_as_written(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    text = _readme()
    start = text.index("from resnetlab.export import OnnxModel, export_model")
    code = text[text.rindex("```python", 0, start) + len("```python") : text.index("```", start)]
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=3),
        tmp_path / "best.safetensors",
        input_size=16,
        class_names=["a", "b", "c"],
    )
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(code, scope)
    assert capsys.readouterr().out.splitlines()[-1] == "['a', 'b', 'c'] True"
    (prediction,) = scope["predictions"]
    assert len(prediction.top) == 3


def test_readme_python_names_exist():
    names = set(re.findall(r"`(resnetlab(?:\.\w+)+)", _readme())) - {"resnetlab.json"}  # a file
    assert len(names) > 10
    for name in sorted(names):
        parts = name.split(".")
        for i in range(len(parts), 0, -1):  # the longest module, then its attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for attribute in parts[i:]:
                assert hasattr(obj, attribute), name
                obj = getattr(obj, attribute)
            break
