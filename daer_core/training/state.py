"""What a training checkpoint holds, and how the trainer saves and resumes it.

:mod:`daer_core.training.checkpoint` writes and reads checkpoint folders (atomic, hashed,
safetensors and JSON); this module decides what goes into one: the model's and the recipe's
extra modules' weights (``model.*`` and ``heads.*``), the optimizers (one per step of the stage
in progress), the RNG states, the text encoder's fitted state, the trainer's own counters
(:class:`TrainerState`) and the config the run was trained with. :func:`resume` puts all of
it back, so that a resumed run continues exactly where the interrupted one stopped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import CheckpointError
from . import checkpoint as ck
from . import run_dir as rd
from .runtime import capture_rng, restore_rng

log = logging.getLogger(__name__)

Optimizers = dict[str, torch.optim.Optimizer]


@dataclass
class TrainerState:
    """The trainer's own counters — saved in every checkpoint's ``state.json``."""

    stage_index: int = 0          # index into the recipe's stages of the stage in progress
    epoch: int = 0                # epochs completed in that stage
    best_score: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stage_step: int = 0           # optimizer steps taken in that stage (learning-rate warmup)
    finished_training: bool = False
    skipped_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def stage_name(stage_names: list[str], state: TrainerState) -> str:
    """The stage in progress (the last one once training has finished)."""
    return stage_names[min(state.stage_index, len(stage_names) - 1)]


def weights(model: nn.Module, heads: nn.ModuleDict, with_heads: bool = True
            ) -> dict[str, torch.Tensor]:
    """The model's tensors as ``model.*``, and the recipe's extra modules' as ``heads.*``."""
    out = {f"model.{k}": v for k, v in model.state_dict().items()}
    if with_heads:  # the stage-1/2 classifiers, needed only until their stage is over
        out.update({f"heads.{k}": v for k, v in heads.state_dict().items()})
    return out


def load_weights(model: nn.Module, heads: nn.ModuleDict,
                 tensors: dict[str, torch.Tensor]) -> None:
    """Put :func:`weights`' tensors back (heads only when the checkpoint has them)."""
    model_part = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    heads_part = {k[6:]: v for k, v in tensors.items() if k.startswith("heads.")}
    model.load_state_dict(model_part)
    if heads_part:
        heads.load_state_dict(heads_part)


def save(run_dir: Path, model, heads: nn.ModuleDict, state: TrainerState,
         stage_names: list[str], optimizers: Optimizers | None) -> None:
    """The resumable checkpoint of the current position (``<stage>-<epoch>``, or
    ``trained`` once training has finished); ``LATEST`` points at it and older resumable
    checkpoints are pruned (the best and final weights stay)."""
    rng_meta, rng_tensors = capture_rng()
    opt_meta: dict[str, dict] = {}
    opt_tensors: dict[str, torch.Tensor] = {}
    for step, optimizer in (optimizers or {}).items():
        opt_meta[step], tensors = ck.flatten_optimizer(optimizer.state_dict(),
                                                       prefix=f"opt.{step}")
        opt_tensors.update(tensors)
    saved = {"trainer": state.as_dict(), "rng": rng_meta,
             "optimizers": opt_meta or None,
             "text_encoder": model.text_encoder.export_state()}
    # pin the config this checkpoint was trained with: resume refuses a damaged or edited
    # config.yaml instead of silently continuing with defaults (run_dir.check_config_digest)
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file():
        saved["config_sha256"] = rd.config_digest(cfg_path)
        saved["config_yaml"] = cfg_path.read_text(encoding="utf-8")
    tag = f"{stage_name(stage_names, state)}-{state.epoch:04d}"
    if state.finished_training:
        tag = "trained"
    ck.write_checkpoint(run_dir, tag, weights(model, heads), saved,
                        {**rng_tensors, **opt_tensors})
    ck.set_latest(run_dir, tag)
    ck.prune_checkpoints(run_dir, keep={tag, "final", *(f"best-{s}" for s in stage_names)})


def save_weights(run_dir: Path, tag: str, model, heads: nn.ModuleDict, state: TrainerState,
                 with_heads: bool = True) -> None:
    """Weights alone (``best-<stage>``, ``final``): not a point to resume from."""
    saved = {"trainer": state.as_dict(), "text_encoder": model.text_encoder.export_state()}
    ck.write_checkpoint(run_dir, tag, weights(model, heads, with_heads), saved)


def restore_weights(run_dir: Path, tag: str, model: nn.Module, heads: nn.ModuleDict) -> bool:
    """Load checkpoint ``tag``'s weights; False when there is no such checkpoint."""
    if not (run_dir / "checkpoints" / tag).is_dir():
        return False
    tensors, _, _ = ck.read_checkpoint(run_dir, tag)
    load_weights(model, heads, tensors)
    return True


def resume(run_dir: Path, model, heads: nn.ModuleDict, device: torch.device,
           log_event: Callable[..., None]) -> tuple[str, TrainerState, dict | None, dict]:
    """The newest complete checkpoint back in place: the weights (on ``device``), the text
    encoder's state and the RNG states. Returns its tag, the trainer's counters, the saved
    optimizer states (None when it has none) and the checkpoint's extra tensors, from which
    :func:`load_optimizers` restores the optimizers of the stage in progress."""
    tag, why = ck.resume_tag(run_dir)
    if tag is None:
        raise CheckpointError(f"{run_dir}: nothing to resume (no complete checkpoint);"
                              " start it with `daer train` instead")
    if why:  # LATEST lost or damaged: the furthest complete checkpoint still counts
        log.warning("%s: %s; resuming from the newest complete checkpoint %s",
                    run_dir, why, tag)
        log_event("latest_recovered", reason=why, checkpoint=tag)
    tensors, saved, extra = ck.read_checkpoint(run_dir, tag)
    rd.check_config_digest(run_dir, tag, saved)
    model.text_encoder.import_state(saved.get("text_encoder") or {})
    load_weights(model, heads, tensors)
    model.to(device)
    heads.to(device)
    state = TrainerState(**saved["trainer"])
    restore_rng(saved["rng"], extra)
    # "optimizer": checkpoints written before recipes had several optimizer steps
    optimizer_states = saved.get("optimizers") or (
        {"main": saved["optimizer"]} if saved.get("optimizer") else None)
    return tag, state, optimizer_states, extra


def load_optimizers(optimizers: Optimizers, optimizer_states: dict,
                    extra: dict[str, torch.Tensor]) -> None:
    """Each step's optimizer state, as :func:`save` flattened it, back into ``optimizers``."""
    for step, meta in optimizer_states.items():
        optimizers[step].load_state_dict(ck.unflatten_optimizer(meta, extra))
