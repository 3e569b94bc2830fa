"""The trainer every method shares: a training recipe's stages, run resumably.

A recipe (:class:`~daer_core.interfaces.TrainingRecipe`, ``train.recipe``) says which stages a
method has, what each trains and with which losses; the default, ``daer-three-stage``, is
Algorithm 1 of the paper (text classification, image classification, relation training). The
trainer owns everything else, one job to a module, and :class:`Trainer` puts them in order:

* :mod:`.assembly` — device and precision, the splits, the recipe, the pipeline and the checks
  that refuse a run before anything is written;
* :mod:`.batches` — the data path (texts prepared once, images decoded by workers, seeded
  shuffling, batches copied to the device without waiting);
* :mod:`.stage_loop` — the epochs of a stage, its optimizer steps, finiteness checks, early
  stopping on the validation split and the ``epoch_hooks``;
* :mod:`.validation` — validation after every epoch (never the test split);
* :mod:`.optimizers` and :mod:`.finetune` — a stage's optimizers and the fine-tuning policy;
* :mod:`.state` — what a checkpoint holds (model, the recipe's extra modules, optimizers,
  RNG states, the trainer's counters) and exact resume;
* :mod:`.run_dir` and :mod:`.tracking` — the run directory and its log;
* :mod:`.report` — the test-split metrics; :mod:`.distributed` — ``torchrun``.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from ..config import RunConfig
from ..errors import CheckpointError, ConfigError, DataError
from ..evaluation.protocol import resolve_protocol
from ..evaluation.retrieval import Embedded, embed_records, evaluate_embedded
from ..interfaces import FeatureDataset, TrainingRecipe
from ..pipeline import RetrievalModel, build_pipeline
from . import assembly, stage_loop, validation
from . import checkpoint as ck
from . import run_dir as rd
from . import state as st
from .batches import Batches
from .optimizers import stage_optimizers
from .runtime import seed_everything
from .stage_loop import EpochReport
from .state import Optimizers, TrainerState
from .tracking import RunLog, require_mlflow

__all__ = ["EpochReport", "Trainer", "TrainerState"]

log = logging.getLogger(__name__)


class Trainer:
    """Trains one run into ``run_dir``: :meth:`train`, then :meth:`evaluate` for the test
    metrics, both inside :meth:`locked` when the run directory must stay this run's in
    between (``daer_core.training.api.train_and_evaluate`` does that); :meth:`train` alone
    holds the lock for itself. :meth:`validation_metrics` scores the current model on the
    validation split (``daer tune``'s objective)."""

    def __init__(self, config: RunConfig, run_dir: Path, registry=None, *,
                 splits: tuple[str, ...] = ("train", "val", "test")):
        from registry import get_registry
        registry = get_registry(registry)
        if config.dataset is None:
            raise ConfigError("dataset: a run needs a dataset (config key `dataset`, or"
                              " --dataset NAME)")
        self.config = config
        self.run_dir = Path(run_dir)
        self.registry = registry
        self.dist, self.device, self.bf16, self.num_workers = assembly.runtime(config)
        self.state = TrainerState()
        if config.train.tracking.mlflow_uri:
            require_mlflow()  # before anything is written
        name = config.dataset.name
        self.dataset = registry.create("dataset", name, config.dataset.params)
        #: a feature dataset trains feature-level encoders (``inputs = "features"``)
        self.features = isinstance(self.dataset, FeatureDataset)
        self.classes = list(self.dataset.classes)
        #: the splits this trainer reads; ``daer tune`` leaves out "test", which a trial
        #: must never see (the dataset is not even asked for it)
        self.split_names = tuple(splits)
        self.splits = assembly.load_splits(self.dataset, self.split_names, self.features, name)
        self.recipe: TrainingRecipe = registry.create("recipe", config.train.recipe.name,
                                                      config.train.recipe.params)
        assembly.check_labels(config, self.recipe, self.classes)
        #: category-level mAP or instance-level Recall@K (``evaluate.protocol``)
        self.protocol = resolve_protocol(config.evaluate.protocol, self.splits.values(),
                                         len(self.classes))
        self.stage_names = [spec.name for spec in self.recipe.stages]
        assembly.check_stage_configs(config, self.recipe, self.stage_names)
        self.model: RetrievalModel
        seed_everything(config.seed)  # initial weights depend on the seed alone
        self.model, self.preprocess = build_pipeline(
            config, registry, native_image_size=getattr(self.dataset, "native_image_size", None))
        assembly.check_inputs(config, self.model, self.features)
        self.multi_label = assembly.is_multi_label(self.splits["train"], self.classes, name)
        #: the recipe's extra modules (classifier heads, discriminators, ...): in checkpoints
        #: until training ends, never in the final weights
        self.heads = nn.ModuleDict(self.recipe.setup(self.model, len(self.classes),
                                                     self.multi_label))
        self._batches = Batches(model=self.model, preprocess=self.preprocess,
                                splits=self.splits, num_classes=len(self.classes),
                                seed=config.seed, device=self.device, bf16=self.bf16,
                                num_workers=self.num_workers)
        self._ddp: nn.Module | None = None
        self._stage_loader = None  # the training loader of the stage in progress
        #: called after every epoch's validation with an :class:`EpochReport`; an exception
        #: raised by a hook (``daer tune``'s pruner) ends the run after that epoch's log line
        self.epoch_hooks: list[Callable[[EpochReport], None]] = []
        self._run_log = RunLog(config, self.run_dir, self.dist.is_main)
        self._holding_lock = False

    # -- the run directory -----------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, resume: bool = False) -> Iterator[None]:
        """The run directory held by this run for the block: the one place its lock is
        taken. A new run first refuses a folder that is not a daer run (before the lock
        creates the folder); a second run on the same folder fails at once, naming the
        owner. Re-entering (``train`` inside ``locked``) keeps the lock held once; under
        ``torchrun`` rank 0 alone locks, as it alone writes."""
        if self._holding_lock or not self.dist.is_main:
            yield
            return
        if not resume:
            rd.refuse_foreign_folder(self.run_dir)
        with rd.RunLock(self.run_dir):
            self._holding_lock = True
            try:
                yield
            finally:
                self._holding_lock = False

    def prepare_run_dir(self) -> dict:
        """Write ``config.yaml``, ``split.json`` and ``data_report.json``; returns the data
        report."""
        return rd.write_run_files(self.run_dir, self.config, self.dataset, self.classes,
                                  self.splits, self.split_names)

    def _log(self, event: str, **fields) -> None:
        self._run_log.event(event, **fields)

    def close_trackers(self) -> None:
        self._run_log.close()

    # -- checkpoints -----------------------------------------------------------------------
    def _save(self, optimizers: Optimizers | None) -> None:
        if self.dist.is_main:
            st.save(self.run_dir, self.model, self.heads, self.state, self.stage_names,
                    optimizers)

    def _save_weights(self, tag: str, heads: bool = True) -> None:
        if self.dist.is_main:
            st.save_weights(self.run_dir, tag, self.model, self.heads, self.state, heads)

    def _restore(self, tag: str) -> bool:
        self.dist.barrier()  # every process reads what rank 0 has just written
        return st.restore_weights(self.run_dir, tag, self.model, self.heads)

    def _stage_name(self) -> str:
        """The stage in progress (the last one once training has finished)."""
        return st.stage_name(self.stage_names, self.state)

    def _resume(self) -> Optimizers | None:
        tag, self.state, saved, extra = st.resume(self.run_dir, self.model, self.heads,
                                                  self.device, self._log)
        optimizers = None
        if saved and not self.state.finished_training:
            optimizers = self._optimizers(self._stage_name())
            st.load_optimizers(optimizers, saved, extra)
        self._log("resumed", checkpoint=tag, stage=self._stage_name(), epoch=self.state.epoch)
        log.info("resumed from checkpoint %s", tag)
        return optimizers

    # -- the steps tests, benchmarks and `daer tune` replace ---------------------------------
    def _optimizers(self, stage: str) -> Optimizers:
        """One optimizer per step of the stage (:func:`.optimizers.stage_optimizers`)."""
        return stage_optimizers(self.recipe, self.model, self.heads, stage,
                                assembly.stage_config(self.config, stage))

    def _train_epoch(self, stage: str, optimizers: Optimizers) -> dict[str, float]:
        return stage_loop.train_epoch(self, stage, optimizers)

    @torch.no_grad()
    def _validate(self, stage: str) -> dict[str, float]:
        """The stage's validation figures with ``score`` ({} without a validation split)."""
        records = self.splits["val"]
        if not records:
            return {}
        spec = self.recipe.stage(stage)
        self.model.eval()
        self.heads.eval()
        if spec.validation == "accuracy":
            return validation.accuracy(self.recipe, stage, spec, self.model, self.heads,
                                       records, batches=self._batches, dist=self.dist,
                                       device=self.device)
        return self._retrieval_validation(spec.scorer)

    def _retrieval_validation(self, scorer: str = "relation") -> dict[str, float]:
        emb = self._embed(self.splits["val"], "validation")
        # evaluate_embedded is looked up in this module at each call (tests script it here)
        return validation.retrieval(self.model, emb, self.config, self.protocol,
                                    device=self.device, scorer=scorer,
                                    category_fn=evaluate_embedded)

    def _embed(self, records: list, desc: str) -> Embedded:
        # embed_records is looked up in this module at each call (tests spy on it here)
        return validation.embed(self.model, self.preprocess, records, desc, dist=self.dist,
                                device=self.device, bf16=self.bf16,
                                num_workers=self.num_workers, embed_fn=embed_records)

    def _on_device(self, batch, spec, device: torch.device | None = None):
        return self._batches.on_device(batch, spec, device)

    def _autocast(self):
        return self._batches.autocast()

    # -- the whole run -----------------------------------------------------------------------
    def train(self, resume: bool = False) -> None:
        """Run (or continue) the recipe's stages; afterwards the model holds the final weights.

        The run directory is locked for the whole call (:meth:`locked`; a second run on the
        same folder fails at once instead of mixing two runs' files), a new run refuses a
        folder that is not a daer run, and the log is only ever appended to (a torn last line
        is cut off). Under ``torchrun`` rank 0 alone writes; every process trains its share
        of each batch.
        """
        main = self.dist.is_main
        with self.locked(resume):
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
                self._start(resume)
            self._prepare_devices()
            while not self.state.finished_training:
                stage = self.stage_names[self.state.stage_index]
                stage_loop.run_stage(self, stage, optimizers)
                optimizers = None
                stage_loop.next_stage(self)
            self._restore("final")
            self.model.to(self.device)

    def _start(self, resume: bool) -> None:
        """A new run (or one interrupted before its first checkpoint): the run files, the
        ``start`` event, the text encoder fitted on the training texts, the first checkpoint."""
        main = self.dist.is_main
        assembly.refuse_undecodable_images(self.config, self.splits)
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

    def _materialize(self) -> None:
        """Give lazily sized layers their shapes (:func:`.assembly.materialize`)."""
        assembly.materialize(self.model, self.heads, self.recipe, self.preprocess,
                             self.splits["train"][:2], self._batches)

    def _prepare_devices(self) -> None:
        """Memory layout, compilation and the multi-process wrapper
        (:func:`.assembly.prepare_devices`)."""
        ddp = assembly.prepare_devices(self.config, self.model, self.heads, self.recipe,
                                       self.device, self.dist)
        if ddp is not None:
            self._ddp = ddp

    # -- scores ------------------------------------------------------------------------------
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
