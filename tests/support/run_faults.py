"""Faults injected into a training run, for the resume and run-folder tests."""
from __future__ import annotations

from typing import Callable

from daer_core.training.trainer import Trainer


def kill_at_epoch_call(monkeypatch, n: int) -> Callable[[], None]:
    """Make the n-th ``Trainer._train_epoch`` call raise KeyboardInterrupt (a Ctrl-C or a
    kill there); returns a function that puts the real method back."""
    real = Trainer._train_epoch
    calls = {"n": 0}

    def dying(self, stage, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(self, stage, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", dying)
    return lambda: monkeypatch.setattr(Trainer, "_train_epoch", real)
