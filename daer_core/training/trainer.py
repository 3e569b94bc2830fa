"""The trainer every method shares: a training recipe's stages, run resumably.

A recipe (:class:`~daer_core.interfaces.TrainingRecipe`, ``train.recipe``) says which stages a
method has, what each trains and with which losses; the default, ``daer-three-stage``, is
Algorithm 1 of the paper (text classification, image classification, relation training). The
trainer owns everything else: device and precision, the data path (texts prepared once,
images decoded by workers, seeded shuffling), the optimizer steps, early stopping on the
validation split, logs and progress, atomic checkpoints with exact resume, and multi-process
training under ``torchrun`` (:mod:`daer_core.training.distributed`).

Every epoch ends with validation (never the test split), early-stopping bookkeeping and an
atomic checkpoint that holds the model, the recipe's extra modules, the optimizers, the RNG
states and the trainer's own counters. Shuffling is seeded from (seed, stage, epoch), so a
resumed run replays exactly the batches an uninterrupted run would have seen. A training step
never waits for the device: losses are summed on it and checked for finiteness every
``train.finite_check_every`` steps.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import RunConfig, dump_config
from ..config.schema import StageConfig
from ..data.feature_pairs import feature_records
from ..data.images import undecodable
from ..data.loader import Batch, EpochSampler, PreparedTexts, make_loader
from ..errors import CheckpointError, ConfigError, DataError, TrainingError
from ..evaluation.protocol import evaluate_split, resolve_protocol
from ..evaluation.retrieval import Embedded, embed_records
from ..interfaces import FeatureDataset, StageSpec, TrainBatch, TrainingRecipe
from ..pipeline import RetrievalModel, build_pipeline
from . import checkpoint as ck
from . import distributed
from . import run_dir as rd
from . import state as st
from .finetune import frozen, hold_batchnorm, warm_up_learning_rates
from .optimizers import pretrained_parameters, stage_optimizers, step_parameters
from .runtime import (configure_precision, derived_seed, pick_device, resolve_bf16,
                      resolve_workers, seed_everything)
from .state import TrainerState
from .tracking import RunLog, require_mlflow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochReport:
    """What one finished epoch tells the trainer's ``epoch_hooks``."""

    stage: str
    stage_index: int      # position of the stage in the recipe
    epoch: int            # epochs completed in that stage (1 after the first)
    score: float | None   # the stage's validation score (None without a validation split)
    metrics: dict[str, Any]
    validation: str = "retrieval"   # what the score is: "retrieval" (mAP) or "accuracy"


class Trainer:
    """Trains one run into ``run_dir``: :meth:`train`, then :meth:`evaluate` for the test
    metrics (``daer_core.training.api.train_and_evaluate`` does both under the run lock)."""

    def __init__(self, config: RunConfig, run_dir: Path, registry=None, *,
                 splits: tuple[str, ...] = ("train", "val", "test")):
        if registry is None:
            from registry import get_registry
            registry = get_registry()
        if config.dataset is None:
            raise ConfigError("dataset: a run needs a dataset (config key `dataset`, or"
                              " --dataset NAME)")
        self.config = config
        self.run_dir = Path(run_dir)
        self.registry = registry
        self.dist = distributed.context(config.train.device)
        self.device = distributed.device_for(self.dist, pick_device(config.train.device))
        configure_precision(self.device)
        self.bf16 = resolve_bf16(config.train.bf16, self.device)
        self.num_workers = resolve_workers(config.train.num_workers, self.device)
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        self.state = TrainerState()
        if config.train.tracking.mlflow_uri:
            require_mlflow()  # before anything is written
        self.dataset = registry.create("dataset", config.dataset.name, config.dataset.params)
        #: a feature dataset trains feature-level encoders (``inputs = "features"``)
        self.features = isinstance(self.dataset, FeatureDataset)
        self.classes = list(self.dataset.classes)
        #: the splits this trainer reads; ``daer tune`` leaves out "test", which a trial
        #: must never see (the dataset is not even asked for it)
        self.split_names = tuple(splits)
        if self.features:
            self.splits = {s: feature_records(self.dataset, s) for s in self.split_names}
        else:
            self.splits = {s: list(self.dataset.split(s)) for s in self.split_names}
        self.splits.setdefault("val", [])
        for s in ("train", "test"):
            if s in self.splits and not self.splits[s]:
                raise DataError(f"dataset {config.dataset.name!r}: the {s} split is empty")
        if not self.splits["val"]:
            log.warning("dataset %r has no validation split: early stopping and best-checkpoint"
                        " selection are disabled", config.dataset.name)
        self.recipe: TrainingRecipe = registry.create("recipe", config.train.recipe.name,
                                                      config.train.recipe.params)
        if not self.classes and self.recipe.uses_labels:
            raise ConfigError(
                f"train.recipe {config.train.recipe.name!r} trains on class labels, and dataset"
                f" {config.dataset.name!r} has none (instance-level data); use a recipe that"
                " needs no labels: contrastive, vse or contrastive-rerank")
        #: category-level mAP or instance-level Recall@K (``evaluate.protocol``)
        self.protocol = resolve_protocol(config.evaluate.protocol, self.splits.values(),
                                         len(self.classes))
        self.stage_names = [spec.name for spec in self.recipe.stages]
        self._check_stage_configs()
        self.model: RetrievalModel
        seed_everything(config.seed)  # initial weights depend on the seed alone
        self.model, self.preprocess = build_pipeline(
            config, registry, native_image_size=getattr(self.dataset, "native_image_size", None))
        self._check_inputs()
        self.multi_label = any(len(r.labels) > 1 for r in self.splits["train"])
        used = {c for r in self.splits["train"] for c in r.labels}
        if len(used) < 2 and self.classes:
            log.warning("dataset %r: every training pair has the same class; category-level"
                        " mAP is then 1.0 for any model (chance is 1.0 too), so this run's"
                        " figures will say nothing. Check the labels", config.dataset.name)
        #: the recipe's extra modules (classifier heads, discriminators, ...): in checkpoints
        #: until training ends, never in the final weights
        self.heads = nn.ModuleDict(self.recipe.setup(self.model, len(self.classes),
                                                     self.multi_label))
        self._prepared: dict[str, PreparedTexts] = {}
        self._ddp: nn.Module | None = None
        self._stage_loader = None  # the training loader of the stage in progress
        #: called after every epoch's validation with an :class:`EpochReport`; an exception
        #: raised by a hook (``daer tune``'s pruner) ends the run after that epoch's log line
        self.epoch_hooks: list[Callable[[EpochReport], None]] = []
        self._run_log = RunLog(config, self.run_dir, self.dist.is_main)

    def _check_inputs(self) -> None:
        """Raw pairs need raw-input encoders, feature datasets feature-level ones."""
        wanted = "features" if self.features else "raw"
        for key, enc in (("pipeline.text.encoder", self.model.text_encoder),
                         ("pipeline.image.encoder", self.model.image_encoder)):
            if getattr(enc, "inputs", "raw") != wanted:
                name = self.config.pipeline.text.encoder.name if "text" in key else \
                    self.config.pipeline.image.encoder.name
                what = ("pre-extracted features" if self.features else "raw images and texts")
                raise ConfigError(
                    f"{key}: {name!r} reads {getattr(enc, 'inputs', 'raw')} inputs, but dataset"
                    f" {self.config.dataset.name!r} provides {what}; "
                    + ("use the feature-level encoders (`vector-mlp`, e.g. --preset "
                       "daer-features)" if self.features else "use encoders for raw data"))

    def _stage_config(self, stage: str) -> StageConfig:
        """``train.stages.<stage>``, or the defaults when the config does not name it."""
        return getattr(self.config.train.stages, stage, None) or StageConfig()

    def _check_stage_configs(self) -> None:
        """Stage keys the recipe does not have, and batches too small for a stage, are config
        errors naming the key (before anything is written)."""
        stages = self.config.train.stages
        unknown = sorted(set(stages.model_extra or {}) - set(self.stage_names))
        if unknown:
            raise ConfigError(
                f"train.stages.{unknown[0]}: recipe {self.config.train.recipe.name!r} has no"
                f" stage {unknown[0]!r} (its stages: {', '.join(self.stage_names)})")
        for spec in self.recipe.stages:
            sc = self._stage_config(spec.name)
            if sc.enabled and sc.epochs and sc.batch_size < spec.min_batch:
                raise ConfigError(
                    f"train.stages.{spec.name}.batch_size: must be at least {spec.min_batch}"
                    f" for {spec.title} (a lone image cannot be batch-normalised and a lone"
                    f" pair has no negatives), got {sc.batch_size}")

    # -- logging ---------------------------------------------------------------------------
    def _log(self, event: str, **fields: Any) -> None:
        self._run_log.event(event, **fields)

    # -- persistence (daer_core.training.state) ------------------------------------------------
    def _save(self, optimizers: dict[str, torch.optim.Optimizer] | None) -> None:
        if self.dist.is_main:
            st.save(self.run_dir, self.model, self.heads, self.state, self.stage_names,
                    optimizers)

    def _save_weights(self, tag: str, heads: bool = True) -> None:
        if self.dist.is_main:
            st.save_weights(self.run_dir, tag, self.model, self.heads, self.state, heads)

    def _stage_name(self) -> str:
        """The stage in progress (the last one once training has finished)."""
        return st.stage_name(self.stage_names, self.state)

    def _restore(self, tag: str) -> bool:
        self.dist.barrier()  # every process reads what rank 0 has just written
        return st.restore_weights(self.run_dir, tag, self.model, self.heads)

    def _resume(self) -> dict[str, torch.optim.Optimizer] | None:
        tag, self.state, saved, extra = st.resume(self.run_dir, self.model, self.heads,
                                                  self.device, self._log)
        optimizers = None
        if saved and not self.state.finished_training:
            optimizers = self._optimizers(self._stage_name())
            st.load_optimizers(optimizers, saved, extra)
        self._log("resumed", checkpoint=tag, stage=self._stage_name(), epoch=self.state.epoch)
        log.info("resumed from checkpoint %s", tag)
        return optimizers

    # -- one stage of the recipe ------------------------------------------------------------
    def _optimizers(self, stage: str) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per step of the stage (:func:`.optimizers.stage_optimizers`)."""
        return stage_optimizers(self.recipe, self.model, self.heads, stage,
                                self._stage_config(stage))

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              enabled=self.bf16)

    def _prepared_texts(self, split: str) -> PreparedTexts | None:
        """The split's texts through ``prepare``, once (after ``fit``); None for encoders
        that must prepare per batch (``prepare_once = False``)."""
        if not getattr(self.model.text_encoder, "prepare_once", True):
            return None
        if split not in self._prepared:
            self._prepared[split] = PreparedTexts(self.preprocess.text,
                                                  [r.text for r in self.splits[split]])
        return self._prepared[split]

    def _loader(self, split: str, spec: StageSpec, batch_size: int, *, train: bool,
                records: list | None = None, sampler=None):
        prepared = self._prepared_texts(split) if spec.texts and records is None else None
        return make_loader(records if records is not None else self.splits[split],
                           self.preprocess.image_train if train else self.preprocess.image_eval,
                           batch_size=batch_size, num_classes=len(self.classes),
                           sampler=sampler, num_workers=self.num_workers,
                           pin_memory=self.device.type == "cuda", with_images=spec.images,
                           prepared=prepared,
                           # training: worker seeds from the run's seed, not the global state
                           generator=torch.Generator().manual_seed(self.config.seed)
                           if train else None)

    def _on_device(self, batch: Batch, spec: StageSpec,
                   device: torch.device | None = None) -> TrainBatch:
        """Copies that do not wait (pinned memory on CUDA); channels-last images on CUDA.
        ``device`` defaults to the run's (the materialising pass keeps the CPU)."""
        device = self.device if device is None else device
        text = None
        if spec.texts:
            inputs = batch.text_inputs if batch.text_inputs is not None else \
                self.preprocess.text(batch.texts)
            text = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        images = None
        if batch.images is not None:
            fmt = torch.channels_last if device.type == "cuda" else torch.preserve_format
            images = batch.images.to(device, non_blocking=True, memory_format=fmt)
        return TrainBatch(ids=batch.ids, text=text, images=images,
                          labels=batch.labels.to(device, non_blocking=True),
                          texts=batch.texts,
                          groups=None if batch.groups is None
                          else batch.groups.to(device, non_blocking=True))

    def _losses(self, stage: str, step: str, batch: TrainBatch) -> dict[str, torch.Tensor]:
        if self._ddp is not None:  # gradients averaged over the processes of the job
            return self._ddp(stage, step, batch)
        return self.recipe.losses(stage, step, self.model, self.heads, batch)

    def _train_epoch(self, stage: str,
                     optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        sc = self._stage_config(stage)
        loader = self._stage_loader
        loader.sampler.set_epoch(
            derived_seed(self.config.seed, self.state.stage_index, self.state.epoch))
        pretrained = pretrained_parameters(self.recipe, self.model, self.heads, stage)
        warm_up = self.state.epoch < sc.frozen_backbone_epochs  # backbone frozen this epoch
        self.model.train()
        self.heads.train()
        if warm_up or sc.batchnorm == "frozen":
            hold_batchnorm(self.model, pretrained)
        with frozen(pretrained, enabled=warm_up):
            return self._train_steps(stage, optimizers, loader)

    def _check_finite(self, sums: dict[str, torch.Tensor], stage: str) -> None:
        """One wait for the device every ``finite_check_every`` steps, not one per step."""
        if sums and not bool(torch.isfinite(torch.stack(list(sums.values()))).all()):
            raise TrainingError(
                f"{stage} stage: non-finite loss at epoch {self.state.epoch + 1};"
                f" lower train.stages.{stage}.optimizer.lr or enable train.grad_clip")

    def _train_steps(self, stage: str, optimizers: dict[str, torch.optim.Optimizer],
                     loader) -> dict[str, float]:
        spec = self.recipe.stage(stage)
        sc = self._stage_config(stage)
        clip = self.config.train.grad_clip
        every = self.config.train.finite_check_every
        params = {step: step_parameters(self.recipe, self.model, self.heads, stage, step)
                  for step in spec.steps}
        sums: dict[str, torch.Tensor] = {}   # loss terms x pairs, summed on the device
        count, steps, lone = 0, 0, 0
        bar = tqdm(loader, desc=f"{spec.title} epoch {self.state.epoch + 1}/{sc.epochs}",
                   leave=False, unit="batch", disable=None)  # None: no frames unless a tty
        for batch in bar:
            for rid, reason in batch.skipped:
                if rid not in self.state.skipped_ids:
                    log.warning("skipping pair %s: %s", rid, reason)
                    self.state.skipped_ids.append(rid)
                    self._log("skip", id=rid, reason=reason)
            if not batch.ids or len(batch.ids) < spec.min_batch:
                # a lone image cannot be batch-normalised, and a lone pair has no negatives
                lone += len(batch.ids)
                continue
            tb = self._on_device(batch, spec)
            if self.state.stage_step <= sc.warmup_steps or sc.lr_decay_every:
                warm_up_learning_rates(optimizers.values(), self.state.stage_step,
                                       sc.warmup_steps, epoch=self.state.epoch,
                                       decay_every=sc.lr_decay_every,
                                       decay_factor=sc.lr_decay_factor)
            for step in spec.steps:
                with self._autocast():
                    terms = self._losses(stage, step, tb)
                optimizer = optimizers[step]
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(params[step], clip)
                optimizer.step()
                prefix = "train_" if len(spec.steps) == 1 else f"train_{step}_"
                for name, value in terms.items():
                    key = prefix + name
                    contrib = value.detach().double() * len(batch.ids)
                    sums[key] = sums[key] + contrib if key in sums else contrib
            steps += 1
            self.state.stage_step += 1
            count += len(batch.ids)
            if steps % every == 0:
                self._check_finite(sums, stage)
                bar.set_postfix(loss=f"{float(sums[next(iter(sums))]) / count:.4f}")
        self._check_finite(sums, stage)
        if lone:
            log.info("%s: %d pair(s) left alone in the last batch were not used this epoch",
                     spec.title, lone)
        if steps == 0:
            raise TrainingError(f"{stage} stage: epoch {self.state.epoch + 1} made no optimizer"
                                f" step (train split of {len(self.splits['train'])} pairs,"
                                f" batch_size {sc.batch_size})")
        out: dict[str, float] = {k: float(v) / max(count, 1) for k, v in sums.items()}
        out["steps"] = steps
        return out

    def _shard(self, records: list) -> list:
        """This process's share of an evaluation split (every ``world``-th record)."""
        return records[self.dist.rank::self.dist.world] if self.dist.enabled else records

    @torch.no_grad()
    def _validate(self, stage: str) -> dict[str, float]:
        records = self.splits["val"]
        if not records:
            return {}
        spec = self.recipe.stage(stage)
        self.model.eval()
        self.heads.eval()
        if spec.validation == "accuracy":
            loader = self._loader("val", spec, 64, train=False,
                                  records=self._shard(records) if self.dist.enabled else None)
            counts = torch.zeros(2, dtype=torch.float64, device=self.device)
            for batch in loader:
                if not batch.ids:
                    continue
                tb = self._on_device(batch, spec)
                with self._autocast():
                    logits = self.recipe.classify(stage, self.model, self.heads, tb)
                pred = logits.float().argmax(dim=1)
                counts[0] += tb.labels[torch.arange(len(pred), device=self.device), pred].sum()
                counts[1] += len(pred)
            correct, n = self.dist.sum(counts).tolist()
            return {"val_accuracy": correct / max(n, 1), "score": correct / max(n, 1)}
        return self._retrieval_validation(spec.scorer)

    def _retrieval_validation(self, scorer: str = "relation") -> dict[str, float]:
        """The validation split's retrieval figures under the run's protocol, with ``score``
        (mAP average, or mean Recall@K)."""
        emb = self._embed(self.splits["val"], "validation")
        rep, _ = evaluate_split(self.model, emb, self.config.evaluate, self.protocol,
                                   device=self.device, scorer=scorer, with_category=False)
        if self.protocol == "category":
            return {"val_i2t": rep["i2t"], "val_t2i": rep["t2i"], "val_avg": rep["avg"],
                    "score": rep["score"]}
        inst = rep["instance"]
        out = {"val_rsum": inst["rsum"]}
        if "r@1" in inst["i2t"]:
            out["val_r1"] = (inst["i2t"]["r@1"] + inst["t2i"]["r@1"]) / 2
        return {**out, "val_score": rep["score"], "score": rep["score"]}

    def _embed(self, records: list, desc: str) -> Embedded:
        """Embeddings of ``records``; under ``torchrun`` each process embeds its share and all
        of them receive the whole split, in the split's order."""
        emb = embed_records(self.model, self.preprocess, self._shard(records),
                            device=self.device, bf16=self.bf16, desc=desc,
                            num_workers=self.num_workers)
        if not self.dist.enabled:
            return emb
        parts = {e_id: (t, i, lab) for part in self.dist.gather(emb)
                 for e_id, t, i, lab in zip(part.ids, part.text, part.image, part.labels)}
        ids = [r.id for r in records if r.id in parts]
        return Embedded(ids, torch.stack([parts[i][0] for i in ids]),
                        torch.stack([parts[i][1] for i in ids]), [parts[i][2] for i in ids],
                        [r.image_key for r in records if r.id in parts])

    def _run_stage(self, stage: str,
                   optimizers: dict[str, torch.optim.Optimizer] | None) -> None:
        spec = self.recipe.stage(stage)
        sc = self._stage_config(stage)
        if not sc.enabled or sc.epochs == 0:
            self._log("stage_skipped", stage=stage)
            return
        if optimizers is None:
            optimizers = self._optimizers(stage)
        # one loader for the whole stage: its workers live across epochs
        sampler = EpochSampler(len(self.splits["train"]), shuffle=True, rank=self.dist.rank,
                               world=self.dist.world)
        self._stage_loader = self._loader("train", spec, sc.batch_size, train=True,
                                          sampler=sampler)
        while self.state.epoch < sc.epochs:
            t0 = time.time()
            train = self._train_epoch(stage, optimizers)
            val = self._validate(stage)
            self.state.epoch += 1
            score = val.pop("score", None)
            improved = score is not None and (self.state.best_score is None
                                              or score > self.state.best_score)
            if improved:
                self.state.best_score, self.state.best_epoch = score, self.state.epoch
                self.state.bad_epochs = 0
                self._save_weights(f"best-{stage}")
            elif score is not None:
                self.state.bad_epochs += 1
            self._log("epoch", stage=stage, epoch=self.state.epoch, seconds=round(time.time() - t0, 2),
                      best=improved, **train, **val)
            log.info("%s epoch %d/%d: %s", spec.title, self.state.epoch, sc.epochs,
                     ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in {**train, **val}.items()))
            report = EpochReport(stage=stage, stage_index=self.state.stage_index,
                                 epoch=self.state.epoch, score=score, metrics={**train, **val},
                                 validation=spec.validation)
            for hook in self.epoch_hooks:
                hook(report)
            stop = sc.patience is not None and self.state.bad_epochs >= sc.patience
            if stop:
                self._log("early_stop", stage=stage, epoch=self.state.epoch,
                          best_epoch=self.state.best_epoch)
                log.info("early stopping %s after epoch %d (best epoch %s)", stage,
                         self.state.epoch, self.state.best_epoch)
            if stop or self.state.epoch >= sc.epochs:
                break
            self._save(optimizers)

    def _next_stage(self) -> None:
        """Close the current stage: keep its best weights, reset the counters, checkpoint."""
        spec = self.recipe.stages[self.state.stage_index]
        if self._restore(f"best-{spec.name}"):
            log.info("%s: keeping the weights of epoch %s (best on validation)",
                     spec.title, self.state.best_epoch)
        if spec.validation == "retrieval" and self.state.best_epoch is not None:
            key = "val_avg" if self.protocol == "category" else "val_score"
            self._log("selected", stage=spec.name, best_epoch=self.state.best_epoch,
                      **{key: self.state.best_score})
        self.state.stage_index += 1
        self.state.epoch = 0
        self.state.best_score = self.state.best_epoch = None
        self.state.bad_epochs = 0
        self.state.stage_step = 0
        if self.state.stage_index >= len(self.stage_names):
            self.state.finished_training = True
            # the weights `daer evaluate` and `daer search` use; the classifier heads are gone
            self._save_weights("final", heads=False)
        self._save(None)

    # -- the whole run -----------------------------------------------------------------------
    def prepare_run_dir(self) -> dict:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ck.atomic_write_text(self.run_dir / "config.yaml", dump_config(self.config))
        ck.atomic_write_json(self.run_dir / "split.json",
                             {"dataset": self.config.dataset.model_dump(), "classes": self.classes,
                              **{s: [r.id for r in recs] for s, recs in self.splits.items()}})
        if "test" not in self.splits:  # a dataset's report walks every split, test included
            report = {"note": "no data report: this run reads only the splits "
                              + ", ".join(self.split_names) + " (a tuning trial)"}
        else:
            try:
                report = self.dataset.report().as_dict()
            except Exception as exc:  # noqa: BLE001 - a report is informative, not required
                report = {"error": f"{type(exc).__name__}: {exc}"}
        ck.atomic_write_json(self.run_dir / "data_report.json", report)
        return report

    def _refuse_undecodable_images(self) -> None:
        """Under a dataset's ``missing: error`` policy (the file layouts' default), an image
        that cannot be decoded stops the run before anything is written — the same verdict
        ``daer data check`` gives — instead of being skipped silently mid-training."""
        params = self.config.dataset.params or {}
        if params.get("missing") != "error" or params.get("require_images") is False:
            return
        bad = undecodable([r for recs in self.splits.values() for r in recs])
        if bad:
            shown = "; ".join(f"{rid}: {why}" for rid, why in bad[:3])
            more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
            raise DataError(
                f"dataset {self.config.dataset.name!r}: {len(bad)} image(s) cannot be decoded"
                f" — {shown}{more}. Under `missing: error` they stop the run (as `daer data"
                " check` reports); fix the files, or set dataset.params.missing=skip to train"
                " without these pairs")

    def train(self, resume: bool = False) -> None:
        """Run (or continue) the recipe's stages; afterwards the model holds the final weights.

        The run directory is locked for the whole call (a second run on the same folder fails
        at once instead of mixing two runs' files), a new run refuses a folder that is not a
        daer run, and the log is only ever appended to (a torn last line is cut off). Under
        ``torchrun`` rank 0 alone writes; every process trains its share of each batch.
        """
        main = self.dist.is_main
        if not resume and main:
            rd.refuse_foreign_folder(self.run_dir)

        with rd.RunLock(self.run_dir) if main else contextlib.nullcontext():
            optimizers = None
            if main:
                if ck.remove_partial_writes(self.run_dir):
                    log.info("%s: removed files left by an interrupted write", self.run_dir)
                torn = rd.repair_log(self.run_dir / "log.jsonl")
                if torn:
                    log.warning("%s: removed a torn last line (%d bytes, an interrupted write)",
                                self.run_dir / "log.jsonl", torn)
                    self._log("log_repaired", bytes_removed=torn)
            self.dist.barrier()
            resumable, _ = ck.resume_tag(self.run_dir)
            folders = ck.checkpoint_dirs(self.run_dir)
            if resume and resumable is None and folders:
                raise CheckpointError(
                    f"{self.run_dir}: no complete checkpoint to resume from ("
                    f"{ck.describe_unresumable(folders)}); nothing was changed")
            if resume and resumable is not None:
                optimizers = self._resume()
            else:
                if folders:
                    raise CheckpointError(f"{self.run_dir} already holds a run; use --resume"
                                          " to continue it or choose another --out")
                self._refuse_undecodable_images()
                if main and (resume or (self.run_dir / "log.jsonl").is_file()):
                    # a start that never checkpointed: begin again, keeping its log as history
                    log.warning("%s: interrupted before its first checkpoint; starting it over",
                                self.run_dir)
                    self._log("restarted", reason="no checkpoint was written")
                if main:
                    rd.mark_run_dir(self.run_dir)
                seed_everything(self.config.seed)
                report = self.prepare_run_dir() if main else {}
                self._log("start", config=self.config.model_dump(mode="json"),
                          device=str(self.device), processes=self.dist.world, bf16=self.bf16,
                          num_workers=self.num_workers,
                          sizes={s: len(r) for s, r in self.splits.items()})
                for problem in report.get("problems", []):  # e.g. rows skipped while loading
                    self._log("data_problem", **problem)
                    log.warning("data: %s", problem.get("message"))
                train_texts = [r.text for r in self.splits["train"]]
                self.model.text_encoder.fit(train_texts)
                self._materialize()
                self.model.to(self.device)
                self.heads.to(self.device)
                self._save(None)
            self._prepare_devices()
            while not self.state.finished_training:
                stage = self.stage_names[self.state.stage_index]
                self._run_stage(stage, optimizers)
                optimizers = None
                self._next_stage()
            self._restore("final")
            self.model.to(self.device)

    @torch.no_grad()
    def _materialize(self) -> None:
        """Give lazily sized layers (feature encoders infer their input width; a recipe's
        extra modules may too) their shapes with one small forward pass, before any optimizer
        or checkpoint sees them."""
        def lazy(module: nn.Module) -> bool:
            return any(isinstance(p, nn.parameter.UninitializedParameter)
                       for p in module.parameters())

        if not lazy(self.model) and not lazy(self.heads):
            return
        records = self.splits["train"][:2]
        was = self.model.training
        self.model.eval()
        self.heads.eval()
        with torch.no_grad():
            self.model.encode_text(self.preprocess.text([r.text for r in records]))
            self.model.encode_image(torch.stack([self.preprocess.image_eval(r.load_image())
                                                 for r in records]))
            if lazy(self.heads):  # one pass of every step's losses on two training pairs
                for spec in self.recipe.stages:
                    batch = next(iter(self._loader("train", spec, len(records), train=False,
                                                   records=records)))
                    for step in spec.steps:
                        # (the model is still on the CPU here: it moves to the device next)
                        self.recipe.losses(spec.name, step, self.model, self.heads,
                                           self._on_device(batch, spec, torch.device("cpu")))
        self.model.train(was)
        self.heads.train(was)

    def _prepare_devices(self) -> None:
        """Memory layout, compilation and the multi-process wrapper, once the weights are in
        place (a new run after ``fit``, a resumed one after loading its checkpoint)."""
        if self.device.type == "cuda":  # convolutions run faster on NHWC tensors
            self.model.image_encoder.to(memory_format=torch.channels_last)
        if self.config.train.compile:
            for part in (self.model.text_encoder, self.model.image_encoder, self.model.relation):
                part.compile()
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            # stages train different parts of the model: unused parameters are expected
            self._ddp = DistributedDataParallel(_RecipeModule(self.recipe, self.model, self.heads),
                                                find_unused_parameters=True)

    @torch.no_grad()
    def validation_metrics(self) -> dict[str, float]:
        """Retrieval mAP of the current model on the validation split (``daer tune``'s
        objective: the final model, scored exactly as a retrieval stage's epochs are)."""
        if not self.splits["val"]:
            raise DataError(f"dataset {self.config.dataset.name!r} has no validation split;"
                            " a validation score needs one")
        self.model.eval()
        val = self._retrieval_validation()
        val.pop("score")
        return val

    def close_trackers(self) -> None:
        self._run_log.close()

    def evaluate(self) -> dict:
        """Test-split metrics (written by rank 0; every process returns them)."""
        if "test" not in self.splits:
            raise DataError("this trainer was built without the test split (a tuning trial"
                            " never reads it)")
        from .report import write_evaluation
        metrics = None
        if self.dist.is_main:
            metrics = write_evaluation(self.model, self.preprocess, self.splits["test"],
                                       self.classes, self.config, self.run_dir,
                                       device=self.device, protocol=self.protocol)
            shown = ("i2t", "t2i", "avg", "chance", "pairs")
            fields = {k: metrics[k] for k in shown if k in metrics}
            if "instance" in metrics:
                fields["rsum"] = metrics["instance"]["rsum"]
            self._log("test", **fields)
            self.close_trackers()
        return self.dist.broadcast(metrics)


class _RecipeModule(nn.Module):
    """The model and the recipe's extra modules as one module whose forward is a recipe step,
    so that DistributedDataParallel sees every parameter and averages the gradients."""

    def __init__(self, recipe: TrainingRecipe, model: nn.Module, extras: nn.ModuleDict):
        super().__init__()
        self.recipe = recipe
        self.model = model
        self.extras = extras

    def forward(self, stage: str, step: str, batch: TrainBatch) -> dict[str, torch.Tensor]:
        return self.recipe.losses(stage, step, self.model, self.extras, batch)
