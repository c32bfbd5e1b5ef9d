import json
import shutil
from pathlib import Path


def copy_experiment(first: Path, out: Path) -> Path:
    """A copy at ``out`` of the experiment folder ``first``, for a test that may damage it:
    its runs' summaries name the copy's folders, as runs trained there write them."""
    shutil.copytree(first, out)
    there, here = json.dumps(str(first))[1:-1], json.dumps(str(out))[1:-1]
    for summary in out.glob("*/summary.json"):
        summary.write_text(summary.read_text().replace(there, here))
    return out
