"""Device names: what a machine lacks is one clear line, whatever the machine has."""

import contextlib
import re
import signal
import threading

import pytest
import torch

from resnetlab.cli import main
from resnetlab.engine import distributed
from resnetlab.engine.distributed import resolve_device
from resnetlab.errors import ResnetlabError, command_line


@pytest.fixture
def no_accelerators(monkeypatch):
    """A machine with a CPU only, wherever the tests run."""
    for kind, (label, _) in list(distributed.ACCELERATORS.items()):
        monkeypatch.setitem(distributed.ACCELERATORS, kind, (label, lambda: False))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(distributed, "_mps_available", lambda: False)


@pytest.mark.parametrize(
    ("name", "label"), [("cuda", "CUDA"), ("cuda:1", "CUDA"), ("mps", "MPS"), ("xpu", "XPU")]
)
def test_an_accelerator_the_machine_lacks_is_named(no_accelerators, name, label):
    with pytest.raises(ResnetlabError, match=f"^device '{name}': .*{label} is not available"):
        resolve_device(name)


@pytest.fixture
def one_gpu(monkeypatch):
    """A machine with one CUDA device, as far as choosing a device asks (nothing runs there)."""
    monkeypatch.setitem(distributed.ACCELERATORS, "cuda", ("CUDA", lambda: True))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_a_gpu_the_machine_lacks_is_one_line(one_gpu):
    """torch makes 'cuda:1' on a machine with one GPU, and the model sent there failed with
    a traceback: 'CUDA error: invalid device ordinal'."""
    for name in ("cuda", "cuda:0", 0, torch.device("cuda"), "auto"):
        assert resolve_device(name) == torch.device("cuda", 0)
    for name, shown in (("cuda:1", "'cuda:1'"), (1, "1"), (torch.device("cuda", 3), "'cuda:3'")):
        with pytest.raises(ResnetlabError) as error:
            resolve_device(name)
        assert str(error.value) == (
            f"device {shown}: this machine has 1 CUDA device; use cuda:0 or auto"
        )
    # Under torchrun, each process takes the GPU of its local rank: more processes than GPUs.
    with pytest.raises(ResnetlabError, match=r"^device 'auto': torchrun's process 1 on this"):
        resolve_device("auto", local_rank=1)
    with pytest.raises(
        ResnetlabError, match=r"start at most 1 per machine \(--nproc-per-node 1\)$"
    ):
        resolve_device("cuda", local_rank=1)


def test_one_gpu_named_for_every_torchrun_process_is_one_line(one_gpu, monkeypatch):
    # Each process then took cuda:0, and NCCL refused the second ("Duplicate GPU detected")
    # with a traceback as DDP started.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    env = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    for name, value in {**env, "MASTER_ADDR": "h", "MASTER_PORT": "7"}.items():
        monkeypatch.setenv(name, value)
    with command_line(), pytest.raises(ResnetlabError) as error:
        distributed.init_distributed("cuda:0")
    assert str(error.value) == (
        "--device cuda:0 under torchrun puts this machine's 2 processes on one GPU; give "
        "--device cuda (or auto): each process takes the GPU of its local rank"
    )


def test_a_run_on_a_second_gpu_makes_it_current_and_puts_the_first_back(one_gpu, monkeypatch):
    # DataLoader's pin-memory thread takes the current GPU: a run on cuda:1 opened a CUDA
    # context on GPU 0 as well, memory taken from whoever used that one. No GPU is touched.
    from resnetlab.engine.step import global_state_kept

    current = [0]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current[0])
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: current.__setitem__(0, _index(d)))
    monkeypatch.setattr(torch.random, "fork_rng", lambda devices: contextlib.nullcontext())
    with global_state_kept():
        assert distributed.init_distributed("cuda:1")[1] == torch.device("cuda", 1)
        assert current == [1]
    assert current == [0]


def test_cuda_without_an_index_is_the_current_gpu_as_in_pytorch(one_gpu, monkeypatch):
    """After torch.cuda.set_device(1), 'cuda' put a model on GPU 0, while the user's
    x.cuda() went to GPU 1: the model's first call stopped on tensors of two devices."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    for name in ("cuda", torch.device("cuda"), "auto"):
        assert resolve_device(name) == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    # Under torchrun each process takes the GPU of its local rank, whatever is current.
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)


def _index(device: torch.device | int) -> int:
    return torch.device("cuda", device).index if isinstance(device, int) else device.index


@pytest.mark.parametrize("name", ["gpu", "meta", "tpu:0"])
def test_unknown_devices_list_the_known_ones(name):
    with pytest.raises(ResnetlabError, match=r"unknown device .*use auto, cpu, cuda"):
        resolve_device(name)


@pytest.mark.parametrize(
    ("name", "shown"), [(None, "None"), (1.5, "1.5"), (True, "True"), ([0], r"\[0\]")]
)
def test_a_device_that_is_no_device_name_is_one_line(name, shown):
    """predict(..., device=None) was torch's TypeError ('device() received an invalid
    combination of arguments'); True would be CUDA device 1."""
    with pytest.raises(ResnetlabError, match=rf"^unknown device {shown}; use auto, cpu, cuda"):
        resolve_device(name)


def test_load_model_takes_the_devices_predict_takes(no_accelerators, tmp_path):
    """A CUDA index was 'unknown device '0'' in load_model (it named str(0)), and 'cpu:0'
    blamed the file: 'its weights cannot be read (device cpu:0 is invalid)'."""
    import resnetlab

    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8"), path)
    with pytest.raises(ResnetlabError, match=r"^device 0: CUDA is not available on this machine"):
        resnetlab.load_model(path, device=0)
    for device in ("cpu:0", torch.device("cpu", 0)):
        assert next(resnetlab.load_model(path, device=device).parameters()).device.type == "cpu"


def test_auto_falls_back_to_the_cpu(no_accelerators):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_predict_on_a_missing_device_is_one_line(no_accelerators, tmp_path, capsys):
    code = main(["predict", str(tmp_path / "model.safetensors"), "x.jpg", "--device", "mps"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: device 'mps': Apple's MPS is not")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' is not a whole number; torchrun sets it"),
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 but RANK, MASTER_ADDR, MASTER_PORT not set; start"),
        (
            {"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "x", "MASTER_PORT": "1"},
            "RANK=5 is not in 0..1 (WORLD_SIZE)",
        ),
    ],
)
def test_torchrun_variables_set_by_hand_are_one_line_errors(env, says, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ResnetlabError, match=re.escape(says)):
        distributed.init_distributed("cpu")


def test_one_process_is_one_process_whatever_world_size_says(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "")  # set empty, or 1: no process group
    info, device = distributed.init_distributed("cpu")
    assert not info.enabled and device.type == "cpu"


def test_a_process_waiting_for_its_peers_says_what_it_waits_for(monkeypatch, capsys):
    for name, value in {
        "WORLD_SIZE": "3",
        "RANK": "1",
        "MASTER_ADDR": "h",
        "MASTER_PORT": "7",
    }.items():
        monkeypatch.setenv(name, value)
    said = threading.Event()
    real_say = distributed._say
    monkeypatch.setattr(distributed, "_say", lambda line: (real_say(line), said.set()))
    monkeypatch.setattr(distributed, "JOIN_NOTE_AFTER_S", 0.01)
    joined = []
    # The peers "arrive" once the waiting process has said what it waits for.
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)

    def join(backend):
        # PyTorch's wait never hands Ctrl-C to Python: the default action ends the process.
        joined.append((said.wait(60), signal.getsignal(signal.SIGINT)))

    monkeypatch.setattr(distributed.dist, "init_process_group", join)
    before = signal.getsignal(signal.SIGINT)
    info, _ = distributed.init_distributed("cpu")
    assert joined == [(True, signal.SIG_DFL)] and (info.rank, info.world_size) == (1, 3)
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C handled again once joined
    assert capsys.readouterr().err == (
        "rank 1: not all WORLD_SIZE=3 processes have joined at h:7; torchrun starts them "
        "all (Ctrl-C stops)\n"
    )
    # A machine's other processes wait quietly: one line a machine (no timer started).
    monkeypatch.setenv("LOCAL_RANK", "1")
    started = []

    class Timer(threading.Timer):
        def start(self):
            started.append(self)
            super().start()

    monkeypatch.setattr(distributed.threading, "Timer", Timer)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: None)
    distributed.init_distributed("cpu")
    assert started == [] and capsys.readouterr().err == ""
