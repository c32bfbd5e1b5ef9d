"""Helpers and counts of the fault-injection suite.

The counts (kill points, resumes matched, files fuzzed, failures) are printed at the end of
any pytest run that used the suite.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest

import resnetlab
from resnetlab.cli import main

COUNTS: Counter = Counter()

# Examples per generated-file test; the long run sets more (see the README's Reliability).
EXAMPLES = int(os.environ.get("RESNETLAB_FUZZ_EXAMPLES", "20"))


def tally(what: str, n: int = 1) -> None:
    """Count ``n`` more of ``what`` (kill points, resumes matched, files fuzzed, failures)."""
    COUNTS[what] += n


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter) -> None:
    if COUNTS:
        shown = ", ".join(f"{k} {v:,}" for k, v in sorted(COUNTS.items()))
        terminalreporter.write_line(f"fault injection: {shown}")


def cli(capsys, *args: str) -> tuple[int, str]:
    """Run ``resnetlab ARGS`` in this process: the exit status and what went to stderr."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    """Exit status 2 and a last stderr line ``error: ...`` holding every fragment; no
    traceback anywhere."""
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    for fragment in fragments:
        assert fragment in last, (fragment, last)


def strict_json(path: Path):
    """Parse a JSON file as JSON is specified: NaN and Infinity are not JSON."""

    def refuse(name: str):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels and whose data is one
    compressed row: a decompression bomb costs nothing to make."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
        + chunk(b"IEND", b"")
    )


def model_file(path: Path, *, input_size: int = 16, classes: int = 3) -> Path:
    """A small resnet8 model file with class names."""
    model = resnetlab.create_model("resnet8", num_classes=classes)
    resnetlab.save_model(
        model,
        path,
        class_names=[f"c{i}" for i in range(classes)],
        input_size=input_size,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    return path
