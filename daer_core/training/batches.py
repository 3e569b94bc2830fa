"""The trainer's data path: loaders over a run's splits and batches on the device.

Texts go through the text encoder's ``prepare`` once per split (after ``fit``) when the
encoder allows it; images are decoded by the loader's workers; a training loader's worker
seeds come from the run's seed. A batch is copied to the device without waiting (pinned
memory on CUDA), images in channels-last layout there; steps run under bf16 autocast when
the run's precision says so.
"""
from __future__ import annotations

import torch

from ..data.loader import Batch, PreparedTexts, make_loader
from ..interfaces import StageSpec, TrainBatch


class Batches:
    """Loaders and device batches for one run (``model`` is asked, at each use, whether its
    text encoder prepares texts once)."""

    def __init__(self, *, model, preprocess, splits: dict[str, list], num_classes: int,
                 seed: int, device: torch.device, bf16: bool, num_workers: int):
        self.model = model
        self.preprocess = preprocess
        self.splits = splits
        self.num_classes = num_classes
        self.seed = seed
        self.device = device
        self.bf16 = bf16
        self.num_workers = num_workers
        self._prepared: dict[str, PreparedTexts] = {}

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              enabled=self.bf16)

    def prepared_texts(self, split: str) -> PreparedTexts | None:
        """The split's texts through ``prepare``, once (after ``fit``); None for encoders
        that must prepare per batch (``prepare_once = False``)."""
        if not getattr(self.model.text_encoder, "prepare_once", True):
            return None
        if split not in self._prepared:
            self._prepared[split] = PreparedTexts(self.preprocess.text,
                                                  [r.text for r in self.splits[split]])
        return self._prepared[split]

    def loader(self, split: str, spec: StageSpec, batch_size: int, *, train: bool,
               records: list | None = None, sampler=None):
        """A loader over ``split`` (or over ``records``, texts then prepared per batch)
        with what ``spec``'s stage reads: images, texts or both."""
        prepared = self.prepared_texts(split) if spec.texts and records is None else None
        return make_loader(records if records is not None else self.splits[split],
                           self.preprocess.image_train if train else self.preprocess.image_eval,
                           batch_size=batch_size, num_classes=self.num_classes,
                           sampler=sampler, num_workers=self.num_workers,
                           pin_memory=self.device.type == "cuda", with_images=spec.images,
                           prepared=prepared,
                           # training: worker seeds from the run's seed, not the global state
                           generator=torch.Generator().manual_seed(self.seed)
                           if train else None)

    def on_device(self, batch: Batch, spec: StageSpec,
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
