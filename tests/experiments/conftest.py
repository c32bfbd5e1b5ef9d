import json
import shutil
import subprocess
import sys
from pathlib import Path


def copy_experiment(first: Path, out: Path) -> Path:
    """A copy at ``out`` of the experiment folder ``first``, for a test that may damage it:
    its runs' summaries name the copy's folders, as runs trained there write them."""
    shutil.copytree(first, out)
    there, here = json.dumps(str(first))[1:-1], json.dumps(str(out))[1:-1]
    for summary in out.glob("*/summary.json"):
        summary.write_text(summary.read_text().replace(there, here))
    return out


def refusal_elsewhere(folder: Path) -> str:
    """What another process is told when it asks to hold ``folder`` now (``storage.
    hold_folder``, as a second copy of the experiment does): the refusal, or "" if it could."""
    code = (
        "import sys; from pathlib import Path; from resnetlab.storage import FolderInUse, "
        "hold_folder\ntry:\n    hold_folder(Path(sys.argv[1]), 'fix')\n"
        "except FolderInUse as e:\n    print(e)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()
