"""Reopening a finished run: its config, final weights and test split (for evaluate/search)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig, load_saved_config
from ..errors import CheckpointError
from ..interfaces import PairRecord
from ..pipeline import Preprocess, RetrievalModel, build_pipeline
from . import checkpoint as ck


@dataclass
class LoadedRun:
    config: RunConfig
    model: RetrievalModel
    preprocess: Preprocess
    classes: list[str]
    test: list[PairRecord]
    run_dir: Path


def load_run(run_dir: Path | str, *, registry=None) -> LoadedRun:
    """Rebuild the model of a finished run from ``config.yaml`` and ``checkpoints/final``.

    Weights come from safetensors and the vocabulary from JSON; nothing is unpickled. The
    test split is re-read from the dataset and filtered to the ids recorded in ``split.json``.
    """
    from registry import get_registry
    registry = get_registry(registry)
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (config.yaml missing)")
    if not (run_dir / "checkpoints" / "final").is_dir():
        raise CheckpointError(f"{run_dir}: training has not finished (no checkpoints/final);"
                              f" continue it with `daer train --resume {run_dir}`")
    config = load_saved_config(run_dir / "config.yaml", registry=registry)
    dataset = registry.create("dataset", config.dataset.name, config.dataset.params)
    model, pre = build_pipeline(config, registry, restoring=True,
                                native_image_size=getattr(dataset, "native_image_size", None))
    tensors, state, _ = ck.read_checkpoint(run_dir, "final")
    model.text_encoder.import_state(state.get("text_encoder") or {})
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    model.eval()
    test = list(dataset.split("test"))
    split_file = run_dir / "split.json"
    if split_file.is_file():
        wanted = json.loads(split_file.read_text()).get("test")
        if wanted is not None:
            by_id = {r.id: r for r in test}
            missing = [i for i in wanted if i not in by_id]
            if missing:
                raise CheckpointError(
                    f"{run_dir}: {len(missing)} test ids recorded in split.json are no longer"
                    f" in the dataset (first: {missing[:5]})")
            test = [by_id[i] for i in wanted]
    return LoadedRun(config, model, pre, list(dataset.classes), test, run_dir)
