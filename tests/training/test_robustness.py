"""Failure paths of training and run directories: each gives a clear error, never a traceback."""
from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from safetensors.torch import load_file

from daer_core.cli.main import main
from daer_core.config import load_run_config
from daer_core.errors import CheckpointError, ConfigError, TrainingError
from daer_core.training import checkpoint as ck
from daer_core.training.api import resume_run, train_and_evaluate
from plugins.recipes.daer_three_stage import shared_label_target
from daer_core.training.trainer import Trainer


def test_frobenius_target_marks_pairs_that_share_any_label():
    # texts: {0}, {1, 2}, {3};  images: {2}, {0, 3}
    text = torch.tensor([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.float32)
    image = torch.tensor([[0, 0, 1, 0], [1, 0, 0, 1]], dtype=torch.float32)
    assert shared_label_target(text, image).tolist() == [[0, 1], [1, 0], [0, 1]]


def test_a_kill_before_the_first_checkpoint_restarts_cleanly(tmp_path, tiny_config,
                                                            monkeypatch):
    cfg = load_run_config(tiny_config(train__stages__relation__epochs=1))
    real = ck.save_tensors

    def killed(path, tensors):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck, "save_tensors", killed)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(cfg, tmp_path / "run")
    monkeypatch.setattr(ck, "save_tensors", real)
    assert ck.latest_tag(tmp_path / "run") is None
    metrics = resume_run(tmp_path / "run")  # nothing to resume: starts over, no dead end
    assert 0 <= metrics["avg"] <= 1
    leftovers = [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not leftovers
    events = [e["event"] for e in map(json.loads, (tmp_path / "run" / "log.jsonl").open())]
    # the killed start stays as history, followed by the restart and the run that finished
    assert events[:3] == ["start", "restarted", "start"] and events.count("start") == 2


def test_final_weights_have_no_classifier_heads_and_files_are_shareable(tmp_path, tiny_config):
    run = tmp_path / "run"
    train_and_evaluate(load_run_config(tiny_config(train__stages__relation__epochs=1)), run)
    final = load_file(str(run / "checkpoints" / "final" / "model.safetensors"))
    assert final and not [k for k in final if k.startswith("heads.")]
    mask = os.umask(0)
    os.umask(mask)
    for name in ("config.yaml", "metrics.json", "checkpoints/final/state.json"):
        mode = stat.S_IMODE((run / name).stat().st_mode)
        assert mode == 0o666 & ~mask, (name, oct(mode))
    events = [json.loads(line) for line in (run / "log.jsonl").open()]
    test = [e for e in events if e["event"] == "test"]
    assert len(test) == 1 and test[0]["avg"] == json.loads((run / "metrics.json").read_text())["avg"]


def test_a_corrupt_checkpoint_is_a_checkpoint_error_and_exit_1(tmp_path, tiny_config, capsys):
    run = tmp_path / "run"
    train_and_evaluate(load_run_config(tiny_config(train__stages__relation__epochs=1)), run)
    weights = run / "checkpoints" / "final" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="final"):
        ck.read_checkpoint(run, "final")
    assert main(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err
    assert "CheckpointError" in err and "Traceback" not in err


@pytest.mark.parametrize("every", [1, 2, 50])
def test_a_non_finite_loss_stops_with_a_training_error(tmp_path, tiny_config, monkeypatch,
                                                       every):
    """The loss is read back from the device only every `finite_check_every` steps, but a
    non-finite one still stops the run, within that many steps (and by the epoch's end)."""
    import plugins.recipes.daer_three_stage as recipe
    steps = []
    monkeypatch.setattr(recipe, "classification_loss",
                        lambda logits, labels, multi: steps.append(1) or logits.sum() * float("nan"))
    with pytest.raises(TrainingError, match="non-finite loss.*lr"):
        train_and_evaluate(load_run_config(tiny_config(train__finite_check_every=every)),
                           tmp_path / "run")
    assert len(steps) == min(every, 4)  # 32 training pairs in batches of 8: 4 steps an epoch


def test_bad_training_values_are_config_errors(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match=r"train.stages.image: .*batch_size must be at least 2"):
        # rejected while the config is validated (so `daer config validate` rejects it too)
        load_run_config(tiny_config(train__stages__image__batch_size=1))
    with pytest.raises(ConfigError, match="train.device"):
        load_run_config(tiny_config(train__device="gpu"))
    with pytest.raises(ConfigError, match="evaluate.ks"):
        load_run_config({**tiny_config(), "evaluate": {"ks": [0, 5]}})


def test_a_plugin_bug_is_not_reported_as_an_interface_mismatch():
    import registry
    from registry import ComponentSpec, FactorySignatureError, NoParams

    def broken_fusion(params, text_dim, image_dim):
        return None + 1  # a TypeError inside the plugin itself

    reg = registry.load_plugins().registry
    reg.add(ComponentSpec("fusion", "broken", broken_fusion, NoParams, "", "test"))
    # an interface mismatch is caught when the factory is registered, before any build
    with pytest.raises(FactorySignatureError, match=r"factory\(params, text_dim, image_dim\)"):
        reg.add(ComponentSpec("fusion", "no-deps", lambda params: None, NoParams, "", "test"))
    from daer_core.pipeline import build_pipeline
    base = {"preset": "daer-c", "pipeline": {"image": {"encoder": {"params": {"size": 32}}}}}
    with pytest.raises(TypeError, match="NoneType"):
        build_pipeline(load_run_config({**base, "pipeline": {**base["pipeline"],
                                        "fusion": {"name": "broken"}}}, registry=reg), reg)


def test_evaluating_a_run_never_reads_pretrained_weight_files(tmp_path, tiny_config, caplog,
                                                             capsys):
    """The checkpoint replaces them: the file may be gone where the run is evaluated, and no
    'random weights' warning is printed about a model whose weights come from the run."""
    from PIL import Image
    from torchvision.models import mobilenet_v3_large
    weights = tmp_path / "mnv3.pth"
    torch.save(mobilenet_v3_large(weights=None).state_dict(), weights)
    cfg = tiny_config(train__stages__relation__epochs=1)
    cfg["pipeline"]["image"]["encoder"]["params"]["weights_path"] = str(weights)
    run = tmp_path / "run"
    train_and_evaluate(load_run_config(cfg), run)
    weights.unlink()
    caplog.clear()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert "random weights" not in caplog.text
    assert json.loads(capsys.readouterr().out)["avg"] == json.loads(
        (run / "metrics.json").read_text())["avg"]
    Image.new("RGB", (8, 8)).save(tmp_path / "q.png")
    assert main(["search", str(run), "--image", str(tmp_path / "q.png"), "--k", "1"]) == 0
