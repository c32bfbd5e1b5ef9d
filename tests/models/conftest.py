"""Fixtures of the model tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """PyTorch on one thread, put back after the test: a model's passes on a few tiny images
    are thousands of small ops, and on two threads each hands half its work to the other
    and waits for it, which costs more than the op, and far more when other work holds a
    core (the models and analysis tests took 78 s of CPU instead of 230 s on a busy 2-core
    machine). What a test asserts does not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
