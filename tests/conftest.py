import codecs
import os
import shutil
import signal
import subprocess
import sys
import tempfile

# GNU OpenMP's default makes PyTorch's CPU threads spin at every barrier; when another
# process holds one of a 2-core machine's cores, each op then waits for a descheduled
# thread and training runs 4 to 18 times slower. Passive waiting must be chosen before
# torch loads OpenMP, so here, before any test module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Tests never depend on measured speed: CPU training takes the uncalibrated defaults
# (tests/engine/test_calibrate.py drives the calibration with fixed timings).
os.environ["RESNETLAB_CALIBRATE"] = "off"
# torchrun's variables, which a shell inside a torchrun job or a Kubernetes PyTorchJob pod
# has: with WORLD_SIZE set every run would join a process group. Removed here, before any
# fixture trains; the tests of distributed runs set their own.
os.environ.pop("WORLD_SIZE", None)
os.environ.pop("RANK", None)
os.environ.pop("LOCAL_RANK", None)
os.environ.pop("LOCAL_WORLD_SIZE", None)
os.environ.pop("MASTER_ADDR", None)
os.environ.pop("MASTER_PORT", None)

from pathlib import Path

import pytest
import torch

# What the libraries the tests load keep in the user's home folder goes to a folder of this
# session instead, removed at its end: matplotlib's font list (MPLCONFIGDIR), Keras's
# keras.json (KERAS_HOME), onnxruntime's device id (XDG_CACHE_HOME, else ~/.cache/Microsoft),
# Chromium's crash reports and dconf's cache (XDG_CONFIG_HOME, XDG_CACHE_HOME); torch's and
# Hugging Face's caches follow XDG_CACHE_HOME too, where a test does not set its own. Set
# here, before any test module imports those libraries: matplotlib and Keras read them on
# import. The resnetlab cache has its own fixtures below.
_HOME_FILES = tempfile.mkdtemp(prefix="resnetlab-tests-")
os.environ["MPLCONFIGDIR"] = os.path.join(_HOME_FILES, "matplotlib")
os.environ["KERAS_HOME"] = os.path.join(_HOME_FILES, "keras")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_HOME_FILES, "config")
os.environ["XDG_CACHE_HOME"] = os.path.join(_HOME_FILES, "cache")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_HOME_FILES, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Back in the folder the suite started in before a test's fixtures are torn down: a
    test that moved into its ``tmp_path`` (``monkeypatch.chdir``) is moved back only when
    ``monkeypatch`` is torn down, which the autouse fixtures below take first and so undo
    last, after ``tmp_path`` (removed when its test passes) is gone; the teardowns between
    would run in a folder that is no more (``os.getcwd()`` raises)."""
    os.chdir(item.config.invocation_params.dir)


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


@pytest.fixture(scope="session", autouse=True)
def _no_user_cache(tmp_path_factory):
    """No test writes to the user's cache folder (``~/.cache/resnetlab``), nor reads what an
    earlier run left there: fixtures shared by a module or the session cache what they load
    in a folder of this session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESNETLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch) -> Path:
    """Each test starts with an empty cache folder of its own, outside its ``tmp_path``."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("RESNETLAB_CACHE", str(cache))
    return cache


@pytest.fixture(autouse=True)
def _ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt in every test, as it does in a terminal: a suite
    started in the background by a script or a CI step (``pytest &``, ``nohup make test &``)
    inherits SIGINT ignored, which a training run keeps ignored, as it should, and the tests
    that send one would see it do nothing. Child processes a test starts inherit the
    handler reset, not the ignoring. A test of an ignored SIGINT ignores it itself."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(autouse=True)
def _plain_output(monkeypatch):
    """What the commands print goes through rich, which takes its width and its colours from
    the environment (COLUMNS, FORCE_COLOR, ...); every test reads what a pipe gets, plain text
    80 columns wide, whatever terminal or CI runs the suite. A test of another width sets it."""
    for name in (
        "COLUMNS",
        "LINES",
        "FORCE_COLOR",
        "TTY_COMPATIBLE",
        "TTY_INTERACTIVE",
        "JUPYTER_COLUMNS",
        "JUPYTER_LINES",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _no_run_figures(request, monkeypatch):
    """Training runs and ``eval --png`` draw no loss curves, confusion matrix or gallery of
    the validation mistakes (``errors.png``), except in tests marked ``figures``, which
    check them: matplotlib takes about a quarter of a second for each figure, a third of
    the time of most tests that train, and the gallery's class activation maps a tenth."""
    if request.node.get_closest_marker("figures") is not None:
        return
    from resnetlab.analysis import plots
    from resnetlab.engine import report

    monkeypatch.setattr(plots, "plot_curves", _not_drawn)
    monkeypatch.setattr(plots, "plot_confusion", _not_drawn)
    monkeypatch.setattr(report, "write_error_gallery", _none_misclassified)


def _not_drawn(*args, **kwargs) -> None:
    pass


def _none_misclassified(*args, **kwargs) -> int:
    return 1  # (0 would say "no misclassified validation images" in the run's log)


@pytest.fixture(autouse=True)
def _cpu_unless_marked_gpu(request, monkeypatch):
    """Every test not marked ``gpu`` runs on the CPU, whatever the machine has: there
    ``--device auto`` means the CPU, in this process and in the processes it starts, so
    that tolerances, exact resumes and the CPU's log lines give the same verdicts on a
    machine with a GPU. A test that needs one is marked ``gpu``. Fixtures shared by a
    module or the session are made before this one applies: those name the CPU."""
    if request.node.get_closest_marker("gpu") is not None:
        return
    from resnetlab.engine import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(distributed, "_mps_available", lambda: False)
    for kind, (label, _) in list(distributed.ACCELERATORS.items()):
        monkeypatch.setitem(distributed.ACCELERATORS, kind, (label, lambda: False))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the processes a test starts


@pytest.fixture
def utf8_file_names() -> None:
    """For a test that writes file names outside ASCII (写真, café): Python names files in
    its file-system encoding, which in an ASCII or Latin-1 locale with UTF-8 mode off
    (``LC_ALL=C PYTHONUTF8=0``) cannot spell them; the test skips there, saying how to run it.
    What resnetlab does in such a locale is tested in processes started with one."""
    encoding = sys.getfilesystemencoding()
    if codecs.lookup(encoding).name != "utf-8":
        pytest.skip(
            f"writes non-ASCII file names, which this Python's file-system encoding "
            f"({encoding}) cannot spell; run the tests with PYTHONUTF8=1"
        )


@pytest.fixture
def torch_2_5(monkeypatch):
    """A torch version with every feature checked against one (2.5: CUDA graphs), so that a
    test of the other checks gives the same verdict on the oldest torch supported."""
    from torch.torch_version import TorchVersion

    if torch.__version__ < "2.5":
        monkeypatch.setattr(torch, "__version__", TorchVersion("2.5.1"))


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


@pytest.fixture
def hold_in_another_process():
    """``hold(folder)``: a process that holds ``folder`` (``storage.hold_folder``) until the
    test ends, or until ``hold(folder).kill()``; returns the process."""
    processes = []

    def hold(folder: Path) -> subprocess.Popen:
        code = (
            "import sys; from pathlib import Path; from resnetlab.storage import hold_folder; "
            "hold_folder(Path(sys.argv[1]), 'fix'); print('held', flush=True); sys.stdin.read()"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout.readline() == "held\n"
        return process

    yield hold
    for process in processes:
        process.kill()
        process.wait()
