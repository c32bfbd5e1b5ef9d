"""Freed memory stays in the process on glibc: a training step after the first takes no page
faults for its activations."""

import json
import platform
import subprocess
import sys

import pytest

from resnetlab.engine.cpu import keep_freed_memory

# A step's worth of allocations (64 MiB activations, freed at its end), five times, then
# the fewest page faults of five more: the heap may still grow while it settles, and now and
# then a step faults its 64 MiB in again (seen with PyTorch's AVX2 kernels and oneDNN held
# to AVX2, in 2 of 10 steps at most, and in all of three once on a busy machine). One
# process imports PyTorch and forks a process for each mode, which counts its own faults:
# each starts with the C library's defaults (importing PyTorch sets none), as a process of
# its own would, without importing PyTorch again. What each answers, as JSON by mode: its
# exit status and its count (or its traceback).
SCRIPT = """
import json, os, resource, sys, traceback
import torch
def measure(mode):
    if mode == "keep":
        from resnetlab.engine.cpu import keep_freed_memory
        assert keep_freed_memory()
    elif mode == "old-glibc":  # one that refuses an mmap threshold above 32 MiB
        import ctypes
        from resnetlab.engine.cpu import keep_in_heap
        real = ctypes.CDLL(None).mallopt
        refuse = lambda param, value: param == -3 and value > 32 << 20  # M_MMAP_THRESHOLD
        assert keep_in_heap(lambda param, value: 0 if refuse(param, value) else real(param, value))
    elif mode == "inference":  # what predict, eval and serve build on the CPU
        from resnetlab.engine.inference import inference_model
        from resnetlab.models import create_model
        inference_model(create_model("resnet20", num_classes=10), "cpu")
    def step():
        x = torch.ones(16 << 20)
        return ((x * 2).relu() + x).sum()
    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    for _ in range(5):
        step()
    return str(min(faults() for _ in range(5)))
children = {}
for mode in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        status = 0
        try:
            said = measure(mode)
        except BaseException:
            status, said = 1, traceback.format_exc()
        os.write(write, said.encode())
        os._exit(status)
    os.close(write)
    children[mode] = pid, read
answers = {}
for mode, (pid, read) in children.items():
    with os.fdopen(read) as answer:
        said = answer.read()
    answers[mode] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), said
print(json.dumps(answers))
"""

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the setting is glibc's (elsewhere keep_freed_memory changes nothing)",
)


@pytest.fixture(scope="module")
def faults() -> dict[str, int]:
    """The faults of a step in a process of each mode: glibc's defaults ("default"), which
    each setting is compared with, and each setting. The processes run at once; the faults
    each counts are its own."""
    modes = ("default", "keep", "old-glibc", "inference")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *modes], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answers = json.loads(done.stdout)
    for mode, (status, said) in answers.items():
        assert status == 0, (mode, said[-2000:])
    return {mode: int(said) for mode, (_, said) in answers.items()}


@glibc
def test_a_freed_block_is_reused_without_page_faults(faults):
    # 16,384 faults per tensor with 4 KiB pages, but 32 where it is mapped in 2 MiB huge
    # pages (transparent huge pages always on, or PyTorch's THP_MEM_ALLOC_ENABLE: 2,176
    # faults in all here instead of 65,540); the verdict must not depend on the kernel's.
    pages = (64 << 20) // (2 << 20)
    default, keep = faults["default"], faults["keep"]
    assert default >= pages  # given back to the OS, faulted in again
    assert keep * 20 < default


@glibc
def test_where_glibc_refuses_a_large_threshold_nothing_is_mapped(faults):
    assert faults["old-glibc"] * 20 < faults["default"]


@glibc
def test_an_inference_model_on_the_cpu_keeps_freed_memory_too(faults):
    assert faults["inference"] * 20 < faults["default"]


@glibc
def test_it_is_set_once_and_says_so():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True
