"""``daer tune``: settings searched on the validation split with Optuna.

* :mod:`.space` — ``tune.space`` entries: checked against the run config, sampled per trial;
* :mod:`.trial` — one trial: an ordinary run directory trained without the test split, its
  per-epoch validation scores fed to the pruner, the final validation mAP as its value;
* :mod:`.study` — the study: storage, seeded sampler, pruner, budget, interrupted trials;
* :mod:`.report` — ``best.yaml``, the trials table and the plots.
"""
from .space import apply_params, check_space, suggest_params
from .study import TuneResult, open_study, tune

__all__ = ["TuneResult", "apply_params", "check_space", "open_study", "suggest_params", "tune"]
