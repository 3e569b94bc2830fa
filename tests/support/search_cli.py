"""What the search tests share: the `daer` CLI run in-process, and the tiny model they train.

(A module of its own rather than a conftest: a test that imported from ``conftest`` got
whichever folder's conftest was imported first.)"""
from __future__ import annotations

from daer_core.cli import main as cli_main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``daer ARGV`` in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    try:
        code = cli_main.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return int(code), out.out, out.err


def tiny_search_pipeline() -> dict:
    """The search tests' model at toy sizes: Word2Vec-LSTM with dual-region attention, timm's
    ``convnext_atto`` (layer norm: after a handful of steps MobileNetV3's batch-norm
    statistics make every eval-mode image embedding identical), an MLP relation head."""
    return {"text": {"encoder": {"name": "word2vec-lstm",
                                 "params": {"vector_size": 16, "hidden_size": 16,
                                            "out_dim": 16}},
                     "attention": {"name": "dual-region", "params": {"hidden": [8, 8, 8]}}},
            "image": {"encoder": {"name": "timm",
                                  "params": {"model": "convnext_atto", "out_dim": 16}},
                      "attention": None},
            "relation": {"name": "mlp", "params": {"in_dim": 32, "hidden": [16, 8]}}}
