import os

# GNU OpenMP's default makes PyTorch's CPU threads spin at every barrier; when another
# process holds one of a 2-core machine's cores, each op then waits for a descheduled
# thread and training runs 4 to 18 times slower. Passive waiting must be chosen before
# torch loads OpenMP, so here, before any test module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Tests never depend on measured speed: CPU training takes the uncalibrated defaults
# (tests/engine/test_calibrate.py drives the calibration with fixed timings).
os.environ["RESNETLAB_CALIBRATE"] = "off"

from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _process_wide_torch_settings():
    """A run with ``deterministic=True`` sets PyTorch's deterministic mode for the process;
    each test leaves it as it found it, so no verdict depends on the tests run before."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark


# What the tests read from the real data sets: a copy without one of them skips the tests
# that use the data rather than failing them.
SHARED_FILES = (
    "signs/train_signs.h5",
    "signs/test_signs.h5",
    "signs/64x64_SIGNS",
    "cifar10-jpg.tar.gz",
)


@pytest.fixture
def shared_data() -> Path:
    """The real data sets next to the project; tests that need them skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (see the README's Data section)")
    missing = [name for name in SHARED_FILES if not (SHARED_DATA / name).exists()]
    if missing:
        found = f"{', '.join(missing)} not found in {SHARED_DATA}"
        pytest.skip(f"{found} (see the README's Data section)")
    return SHARED_DATA
