"""Runs stopped as Ctrl-C between steps stops them, for the resume tests."""

import pytest

from resnetlab.engine import train
from resnetlab.engine.train import Trainer


def train_interrupted(monkeypatch, at_step: int, **options) -> None:
    """``train(**options)``, stopped by a KeyboardInterrupt instead of its step ``at_step``
    (counted from 1); the Trainer's step is itself again afterwards."""
    original, calls = Trainer._train_step, {"n": 0}

    def interrupting_step(self, x, y):
        calls["n"] += 1
        if calls["n"] == at_step:
            raise KeyboardInterrupt
        return original(self, x, y)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_train_step", interrupting_step)
        with pytest.raises(KeyboardInterrupt):
            train(**options)
