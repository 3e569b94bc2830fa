"""Algorithm 1 of the paper as a resumable, three-stage trainer.

Stage 1 trains the text encoder as a classifier, stage 2 the image encoder, stage 3 the
relation head on all text x image pairs of each batch with the Frobenius loss while
fine-tuning both encoders. The classifier heads of stages 1 and 2 belong to the trainer, not
to the model, and are dropped once their stage is over.

Every epoch ends with validation (never the test split), early-stopping bookkeeping and an
atomic checkpoint that holds the model, the heads, the optimizer, the RNG states and the
trainer's own counters. Shuffling uses a generator seeded from (seed, stage, epoch), so a
resumed run replays exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import RunConfig, dump_config
from ..data.images import undecodable
from ..errors import CheckpointError, ConfigError, DataError, TrainingError
from ..evaluation.retrieval import embed_records, evaluate_embedded
from ..interfaces import FeatureDataset, PairDataset
from ..pipeline import RetrievalModel, build_pipeline
from . import checkpoint as ck
from . import run_dir as rd
from .batches import make_loader, shared_label_target
from .finetune import frozen, hold_batchnorm, parameter_groups
from .runtime import capture_rng, derived_seed, pick_device, restore_rng, seed_everything

log = logging.getLogger(__name__)

STAGES = ("text", "image", "relation")
STAGE_TITLES = {"text": "stage 1/3 text classification", "image": "stage 2/3 image classification",
                "relation": "stage 3/3 relation training"}


@dataclass
class TrainerState:
    """The trainer's own counters — saved in every checkpoint's ``state.json``."""

    stage_index: int = 0          # index into STAGES of the stage in progress
    epoch: int = 0                # epochs completed in that stage
    best_score: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    finished_training: bool = False
    skipped_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Trainer:
    """Trains one run into ``run_dir``; :meth:`run` returns the test metrics."""

    def __init__(self, config: RunConfig, run_dir: Path, registry=None):
        if registry is None:
            from registry import get_registry
            registry = get_registry()
        if config.dataset is None:
            raise ConfigError("dataset: a run needs a dataset (config key `dataset`, or"
                              " --dataset NAME)")
        self.config = config
        self.run_dir = Path(run_dir)
        self.registry = registry
        self.device = pick_device(config.train.device)
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        self.state = TrainerState()
        self.dataset = registry.create("dataset", config.dataset.name, config.dataset.params)
        if isinstance(self.dataset, FeatureDataset) or not isinstance(self.dataset, PairDataset):
            raise ConfigError(
                f"dataset: {config.dataset.name!r} provides pre-extracted features, not image-text"
                " pairs; DAER pipelines train on raw images and texts (use it with baselines:"
                " `daer benchmark`)")
        self.classes = list(self.dataset.classes)
        self.splits = {s: list(self.dataset.split(s)) for s in ("train", "val", "test")}
        for s in ("train", "test"):
            if not self.splits[s]:
                raise DataError(f"dataset {config.dataset.name!r}: the {s} split is empty")
        if not self.splits["val"]:
            log.warning("dataset %r has no validation split: early stopping and best-checkpoint"
                        " selection are disabled", config.dataset.name)
        self.model: RetrievalModel
        seed_everything(config.seed)  # initial weights depend on the seed alone
        self.model, self.preprocess = build_pipeline(
            config, registry, native_image_size=getattr(self.dataset, "native_image_size", None))
        c = len(self.classes)
        self.heads = nn.ModuleDict({"text": nn.Linear(self.model.text_encoder.out_dim, c),
                                    "image": nn.Linear(self.model.image_encoder.out_dim, c)})
        self.multi_label = any(len(r.labels) > 1 for r in self.splits["train"])
        for stage in ("image", "relation"):
            sc = getattr(config.train.stages, stage)
            if sc.enabled and sc.epochs and sc.batch_size < 2:
                raise ConfigError(
                    f"train.stages.{stage}.batch_size: must be at least 2 (a lone image cannot"
                    f" be batch-normalised and a lone pair has no negatives), got {sc.batch_size}")

    # -- logging ---------------------------------------------------------------------------
    def _log(self, event: str, **fields: Any) -> None:
        rec = {"time": round(time.time(), 3), "event": event, **fields}
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")

    # -- persistence -------------------------------------------------------------------------
    def _tensors(self, heads: bool = True) -> dict[str, torch.Tensor]:
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if heads:  # the stage-1/2 classifiers, needed only until their stage is over
            out.update({f"heads.{k}": v for k, v in self.heads.state_dict().items()})
        return out

    def _load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        heads = {k[6:]: v for k, v in tensors.items() if k.startswith("heads.")}
        self.model.load_state_dict(model)
        if heads:
            self.heads.load_state_dict(heads)

    def _save(self, optimizer: torch.optim.Optimizer | None) -> None:
        rng_meta, rng_tensors = capture_rng()
        opt_meta, opt_tensors = ck.flatten_optimizer(optimizer.state_dict()) if optimizer else (None, {})
        state = {"trainer": self.state.as_dict(), "rng": rng_meta, "optimizer": opt_meta,
                 "text_encoder": self.model.text_encoder.export_state()}
        # pin the config this checkpoint was trained with: resume refuses a damaged or edited
        # config.yaml instead of silently continuing with defaults (run_dir.check_config_digest)
        cfg_path = self.run_dir / "config.yaml"
        if cfg_path.is_file():
            state["config_sha256"] = rd.config_digest(cfg_path)
            state["config_yaml"] = cfg_path.read_text(encoding="utf-8")
        tag = f"{STAGES[min(self.state.stage_index, 2)]}-{self.state.epoch:04d}"
        if self.state.finished_training:
            tag = "trained"
        ck.write_checkpoint(self.run_dir, tag, self._tensors(), state, {**rng_tensors, **opt_tensors})
        ck.set_latest(self.run_dir, tag)
        ck.prune_checkpoints(self.run_dir, keep={tag, "final", *(f"best-{s}" for s in STAGES)})

    def _save_weights(self, tag: str, heads: bool = True) -> None:
        state = {"trainer": self.state.as_dict(), "text_encoder": self.model.text_encoder.export_state()}
        ck.write_checkpoint(self.run_dir, tag, self._tensors(heads), state)

    def _restore(self, tag: str) -> bool:
        if not (self.run_dir / "checkpoints" / tag).is_dir():
            return False
        tensors, _, _ = ck.read_checkpoint(self.run_dir, tag)
        self._load_tensors(tensors)
        return True

    def _resume(self) -> torch.optim.Optimizer | None:
        tag, why = ck.resume_tag(self.run_dir)
        if tag is None:
            raise CheckpointError(f"{self.run_dir}: nothing to resume (no complete checkpoint);"
                                  " start it with `daer train` instead")
        if why:  # LATEST lost or damaged: the furthest complete checkpoint still counts
            log.warning("%s: %s; resuming from the newest complete checkpoint %s",
                        self.run_dir, why, tag)
            self._log("latest_recovered", reason=why, checkpoint=tag)
        tensors, state, extra = ck.read_checkpoint(self.run_dir, tag)
        rd.check_config_digest(self.run_dir, tag, state)
        self.model.text_encoder.import_state(state.get("text_encoder") or {})
        self._load_tensors(tensors)
        self.model.to(self.device)
        self.heads.to(self.device)
        self.state = TrainerState(**state["trainer"])
        restore_rng(state["rng"], extra)
        optimizer = None
        if state.get("optimizer") and not self.state.finished_training:
            optimizer = self._optimizer(STAGES[self.state.stage_index])
            optimizer.load_state_dict(ck.unflatten_optimizer(state["optimizer"], extra))
        self._log("resumed", checkpoint=tag, stage=STAGES[min(self.state.stage_index, 2)],
                  epoch=self.state.epoch)
        log.info("resumed from checkpoint %s", tag)
        return optimizer

    # -- pieces of Algorithm 1 -------------------------------------------------------------
    def _stage_params(self, stage: str) -> list[nn.Parameter]:
        if stage == "text":
            mods = [self.model.text_encoder, self.heads["text"]]
        elif stage == "image":
            mods = [self.model.image_encoder, self.heads["image"]]
        else:
            mods = [self.model]
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    def _pretrained_params(self, stage: str) -> list[nn.Parameter]:
        """Parameters of the stage's encoders that came from pretrained weights."""
        encoders = {"text": [self.model.text_encoder], "image": [self.model.image_encoder],
                    "relation": [self.model.text_encoder, self.model.image_encoder]}[stage]
        return [p for enc in encoders for p in enc.pretrained_parameters()]

    def _optimizer(self, stage: str) -> torch.optim.Optimizer:
        sc = getattr(self.config.train.stages, stage)
        oc = sc.optimizer
        params = parameter_groups(self._stage_params(stage), self._pretrained_params(stage),
                                  sc.backbone_lr)
        if oc.name == "sgd":
            return torch.optim.SGD(params, lr=oc.lr, momentum=oc.momentum, weight_decay=oc.weight_decay)
        if oc.name == "adam":
            return torch.optim.Adam(params, lr=oc.lr, weight_decay=oc.weight_decay)
        return torch.optim.AdamW(params, lr=oc.lr, weight_decay=oc.weight_decay)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              enabled=self.config.train.bf16)

    def _classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
        return nn.functional.cross_entropy(logits.float(), labels.argmax(dim=1))

    def _text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in self.preprocess.text(texts).items()}

    def _train_epoch(self, stage: str, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        sc = getattr(self.config.train.stages, stage)
        gen = torch.Generator().manual_seed(
            derived_seed(self.config.seed, self.state.stage_index, self.state.epoch))
        loader = make_loader(self.splits["train"], self.preprocess.image_train,
                             batch_size=sc.batch_size, num_classes=len(self.classes),
                             shuffle=True, generator=gen,
                             num_workers=self.config.train.num_workers,
                             with_images=stage != "text")
        pretrained = self._pretrained_params(stage)
        warm_up = self.state.epoch < sc.frozen_backbone_epochs  # backbone frozen this epoch
        self.model.train()
        self.heads.train()
        if warm_up or sc.batchnorm == "frozen":
            hold_batchnorm(self.model, pretrained)
        with frozen(pretrained, enabled=warm_up):
            return self._train_steps(stage, optimizer, loader)

    def _train_steps(self, stage: str, optimizer: torch.optim.Optimizer,
                     loader) -> dict[str, float]:
        sc = getattr(self.config.train.stages, stage)
        total, count, steps, lone = 0.0, 0, 0, 0
        bar = tqdm(loader, desc=f"{STAGE_TITLES[stage]} epoch {self.state.epoch + 1}/{sc.epochs}",
                   leave=False, unit="batch", disable=None)  # None: no frames unless a tty
        for batch in bar:
            for rid, reason in batch.skipped:
                if rid not in self.state.skipped_ids:
                    log.warning("skipping pair %s: %s", rid, reason)
                    self.state.skipped_ids.append(rid)
                    self._log("skip", id=rid, reason=reason)
            if not batch.ids or (len(batch.ids) < 2 and stage != "text"):
                # a lone image cannot be batch-normalised, and a lone pair has no negatives
                lone += len(batch.ids)
                continue
            labels = batch.labels.to(self.device)
            with self._autocast():
                if stage == "text":
                    emb = self.model.encode_text(self._text_inputs(batch.texts))
                    loss = self._classification_loss(self.heads["text"](emb), labels)
                elif stage == "image":
                    emb = self.model.encode_image(batch.images.to(self.device))
                    loss = self._classification_loss(self.heads["image"](emb), labels)
                else:
                    t = self.model.encode_text(self._text_inputs(batch.texts))
                    i = self.model.encode_image(batch.images.to(self.device))
                    scores = self.model.pair_scores(t, i).float()
                    loss = self.model.loss(scores, shared_label_target(labels, labels))
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{stage} stage: non-finite loss at epoch {self.state.epoch + 1};"
                    f" lower train.stages.{stage}.optimizer.lr or enable train.grad_clip")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(self._stage_params(stage), self.config.train.grad_clip)
            optimizer.step()
            steps += 1
            total += float(loss.detach()) * len(batch.ids)
            count += len(batch.ids)
            bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
        if lone:
            log.info("%s: %d pair(s) left alone in the last batch were not used this epoch",
                     STAGE_TITLES[stage], lone)
        if steps == 0:
            raise TrainingError(f"{stage} stage: epoch {self.state.epoch + 1} made no optimizer"
                                f" step (train split of {len(self.splits['train'])} pairs,"
                                f" batch_size {sc.batch_size})")
        return {"train_loss": total / max(count, 1), "steps": steps}

    @torch.no_grad()
    def _validate(self, stage: str) -> dict[str, float]:
        records = self.splits["val"]
        if not records:
            return {}
        self.model.eval()
        self.heads.eval()
        if stage in ("text", "image"):
            loader = make_loader(records, self.preprocess.image_eval, batch_size=64,
                                 num_classes=len(self.classes), with_images=stage == "image",
                                 num_workers=self.config.train.num_workers)
            correct = n = 0
            for batch in loader:
                if not batch.ids:
                    continue
                with self._autocast():
                    if stage == "text":
                        logits = self.heads["text"](self.model.encode_text(self._text_inputs(batch.texts)))
                    else:
                        logits = self.heads["image"](self.model.encode_image(batch.images.to(self.device)))
                pred = logits.float().argmax(dim=1).cpu()
                correct += int(batch.labels[torch.arange(len(pred)), pred].sum())
                n += len(pred)
            return {"val_accuracy": correct / max(n, 1), "score": correct / max(n, 1)}
        emb = embed_records(self.model, self.preprocess, records, device=self.device,
                            bf16=self.config.train.bf16, desc="validation")
        rep, _ = evaluate_embedded(self.model, emb, block_size=self.config.evaluate.block_size,
                                   device=self.device, ks=self.config.evaluate.ks)
        return {"val_i2t": rep["i2t"], "val_t2i": rep["t2i"], "val_avg": rep["avg"],
                "score": rep["avg"]}

    def _run_stage(self, stage: str, optimizer: torch.optim.Optimizer | None) -> None:
        sc = getattr(self.config.train.stages, stage)
        if not sc.enabled or sc.epochs == 0:
            self._log("stage_skipped", stage=stage)
            return
        if optimizer is None:
            optimizer = self._optimizer(stage)
        while self.state.epoch < sc.epochs:
            t0 = time.time()
            train = self._train_epoch(stage, optimizer)
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
            log.info("%s epoch %d/%d: %s", STAGE_TITLES[stage], self.state.epoch, sc.epochs,
                     ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in {**train, **val}.items()))
            stop = sc.patience is not None and self.state.bad_epochs >= sc.patience
            if stop:
                self._log("early_stop", stage=stage, epoch=self.state.epoch,
                          best_epoch=self.state.best_epoch)
                log.info("early stopping %s after epoch %d (best epoch %s)", stage,
                         self.state.epoch, self.state.best_epoch)
            if stop or self.state.epoch >= sc.epochs:
                break
            self._save(optimizer)

    def _next_stage(self) -> None:
        """Close the current stage: keep its best weights, reset the counters, checkpoint."""
        stage = STAGES[self.state.stage_index]
        if self._restore(f"best-{stage}"):
            log.info("%s: keeping the weights of epoch %s (best on validation)",
                     STAGE_TITLES[stage], self.state.best_epoch)
        if stage == "relation" and self.state.best_epoch is not None:
            self._log("selected", stage="relation", best_epoch=self.state.best_epoch,
                      val_avg=self.state.best_score)
        self.state.stage_index += 1
        self.state.epoch = 0
        self.state.best_score = self.state.best_epoch = None
        self.state.bad_epochs = 0
        if self.state.stage_index >= len(STAGES):
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
        """Run (or continue) the three stages; afterwards the model holds the final weights.

        The run directory is locked for the whole call (a second run on the same folder fails
        at once instead of mixing two runs' files), a new run refuses a folder that is not a
        daer run, and the log is only ever appended to (a torn last line is cut off).
        """
        if not resume:
            rd.refuse_foreign_folder(self.run_dir)
        with rd.RunLock(self.run_dir):
            optimizer = None
            if ck.remove_partial_writes(self.run_dir):
                log.info("%s: removed files left by an interrupted write", self.run_dir)
            torn = rd.repair_log(self.run_dir / "log.jsonl")
            if torn:
                log.warning("%s: removed a torn last line (%d bytes, an interrupted write)",
                            self.run_dir / "log.jsonl", torn)
                self._log("log_repaired", bytes_removed=torn)
            resumable, _ = ck.resume_tag(self.run_dir)
            folders = ck.checkpoint_dirs(self.run_dir)
            if resume and resumable is None and folders:
                raise CheckpointError(
                    f"{self.run_dir}: no complete checkpoint to resume from (damaged:"
                    f" {', '.join(d.name for d in folders)}); nothing was changed")
            if resume and resumable is not None:
                optimizer = self._resume()
            else:
                if folders:
                    raise CheckpointError(f"{self.run_dir} already holds a run; use --resume"
                                          " to continue it or choose another --out")
                self._refuse_undecodable_images()
                if resume or (self.run_dir / "log.jsonl").is_file():
                    # a start that never checkpointed: begin again, keeping its log as history
                    log.warning("%s: interrupted before its first checkpoint; starting it over",
                                self.run_dir)
                    self._log("restarted", reason="no checkpoint was written")
                rd.mark_run_dir(self.run_dir)
                seed_everything(self.config.seed)
                report = self.prepare_run_dir()
                self._log("start", config=self.config.model_dump(mode="json"),
                          device=str(self.device),
                          sizes={s: len(r) for s, r in self.splits.items()})
                for problem in report.get("problems", []):  # e.g. rows skipped while loading
                    self._log("data_problem", **problem)
                    log.warning("data: %s", problem.get("message"))
                train_texts = [r.text for r in self.splits["train"]]
                self.model.text_encoder.fit(train_texts)
                self.model.to(self.device)
                self.heads.to(self.device)
                self._save(None)
            while not self.state.finished_training:
                stage = STAGES[self.state.stage_index]
                self._run_stage(stage, optimizer)
                optimizer = None
                self._next_stage()
            self._restore("final")
            self.model.to(self.device)

    def evaluate(self) -> dict:
        from .report import write_evaluation
        metrics = write_evaluation(self.model, self.preprocess, self.splits["test"], self.classes,
                                   self.config, self.run_dir, device=self.device)
        self._log("test", **{k: metrics[k] for k in ("i2t", "t2i", "avg", "chance", "pairs")})
        return metrics
