"""`daer train`, `daer evaluate` and `daer search` from the command line, at toy sizes."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from daer_core.cli.main import main

TINY = [
    "--set", "dataset.params.num_pairs=30", "--set", "dataset.params.num_classes=3",
    "--set", "dataset.params.image_size=32",
    "--set", "pipeline.text.encoder.params={vector_size: 8, hidden_size: 8, out_dim: 8}",
    "--set", "pipeline.text.attention.params.hidden=[8, 8, 8]",
    "--set", "pipeline.image.encoder.params.out_dim=8",
    "--set", "pipeline.relation.params={in_dim: 16, hidden: [8, 8]}",
    "--set", "train.stages.text.epochs=1", "--set", "train.stages.image.epochs=1",
    "--set", "train.stages.relation.epochs=1", "--set", "train.threads=1",
    "--set", "evaluate.examples=1",
]


#: what `daer train` printed on stdout for the module's trained run
TRAIN_STDOUT: dict[str, str] = {}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny run, trained through a config file given as the positional CONFIG."""
    folder = tmp_path_factory.mktemp("cli")
    run = folder / "run"
    config = folder / "run.yaml"
    config.write_text("preset: daer\ndataset: {name: shapes}\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", str(config), "--out", str(run), *TINY])
    assert code == 0
    TRAIN_STDOUT["out"] = out.getvalue()
    return run


def test_train_prints_table1_and_writes_metrics(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert {"i2t", "t2i", "avg", "chance"} <= metrics.keys()
    lines = TRAIN_STDOUT["out"].splitlines()
    header = lines.index("Method            Image→Text  Text→Image  Average")
    assert lines[header - 1] == f"Test mAP@all (daer on shapes, {metrics['pairs']} pairs)"
    row = lines[header + 1].split()
    assert row[:2] == ["this", "run"]
    assert [float(v) for v in row[2:]] == [round(metrics[k], 3) for k in ("i2t", "t2i", "avg")]
    chance = lines[header + 2].split()
    assert chance[0] == "chance" and float(chance[3]) == round(metrics["chance"], 3)
    assert f"run directory: {trained_run}" in TRAIN_STDOUT["out"]


def test_train_reads_the_positional_config(trained_run):
    import yaml
    saved = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert saved["preset"] == "daer" and saved["dataset"]["name"] == "shapes"
    assert saved["dataset"]["params"]["num_pairs"] == 30  # --set applied on top of the file


def test_search_says_when_the_query_is_unknown_or_cut(trained_run, capsys):
    assert main(["search", str(trained_run), "--text", "zzqx qqxz", "--k", "2", "--json"]) == 0
    captured = capsys.readouterr()
    notices = json.loads(captured.out)["notices"]
    assert len(notices) == 1 and "none of the query's 2 word(s)" in notices[0]
    assert "daer: notice: none of the query's" in captured.err
    assert main(["search", str(trained_run), "--text", "a red circle", "--k", "2",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notices"] == []
    long = " ".join(["a red circle left of a blue square"] * 40)  # 320 words > max_tokens 200
    assert main(["search", str(trained_run), "--text", long, "--k", "1", "--json"]) == 0
    notices = json.loads(capsys.readouterr().out)["notices"]
    assert any("cut at max_tokens=200" in n for n in notices)


def test_verbose_and_daer_debug_print_the_traceback_of_a_runtime_failure(
        trained_run, tmp_path, capsys, monkeypatch):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text((trained_run / "config.yaml").read_text())
    assert main(["evaluate", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "training has not finished" in err and "Traceback" not in err
    assert main(["-v", "evaluate", str(broken)]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("DAER_DEBUG", "1")
    assert main(["evaluate", str(broken)]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "search"])
def test_evaluate_and_search_run_on_the_device_asked_for(trained_run, capsys, command):
    extra = ["--text", "a red circle", "--k", "1"] if command == "search" else []
    assert main([command, str(trained_run), "--device", "cpu", "--json", *extra]) == 0
    assert json.loads(capsys.readouterr().out)
    code = main([command, str(trained_run), "--device", "cuda:99", *extra])
    err = capsys.readouterr().err
    assert code == 2 and "--device: 'cuda:99' requested but" in err


def test_evaluate_reproduces_the_saved_metrics(trained_run, capsys):
    saved = json.loads((trained_run / "metrics.json").read_text())
    assert main(["evaluate", str(trained_run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["i2t"] == pytest.approx(saved["i2t"]) and out["t2i"] == pytest.approx(saved["t2i"])


def test_search_by_text_and_by_image(trained_run, capsys, tmp_path):
    assert main(["search", str(trained_run), "--text", "a large red circle", "--k", "3",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["results_kind"] == "image" and len(res["results"]) == 3
    scores = [r["score"] for r in res["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(r["labels"] for r in res["results"])
    from PIL import Image
    img = tmp_path / "query.png"
    Image.new("RGB", (32, 32), (220, 40, 40)).save(img)
    assert main(["search", str(trained_run), "--image", str(img), "--k", "2"]) == 0
    assert "top 2 texts" in capsys.readouterr().out


def test_bad_inputs_give_exit_codes_not_tracebacks(trained_run, tmp_path, capsys):
    assert main(["train", "--preset", "daer", "--dataset", "shapez"]) == 2
    assert "did you mean 'shapes'" in capsys.readouterr().err
    assert main(["train", "--preset", "daer", "--dataset", "shapes",
                 "--set", "train.stages.relaton.epochs=1"]) == 2
    assert "train.stages.relaton" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 1
    assert "not a run directory" in capsys.readouterr().err
    assert main(["search", str(trained_run), "--image", str(tmp_path / "nope.jpg")]) == 1
    assert "nope.jpg" in capsys.readouterr().err


def test_interrupted_training_says_how_to_resume_and_resumes(tmp_path, capsys, monkeypatch):
    from daer_core.training.trainer import Trainer
    real = Trainer._train_epoch
    calls = {"n": 0}

    def interrupted(self, stage, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, stage, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    run = tmp_path / "run"
    assert main(["train", "--preset", "daer", "--dataset", "shapes", "--out", str(run),
                 *TINY]) == 130
    assert f"daer train --resume {run}" in capsys.readouterr().err
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    assert main(["train", "--resume", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["avg"] >= 0
    assert main(["train", "--resume", str(run), "--set", "seed=1"]) == 2


def test_bf16_autocast_trains_on_cpu(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "daer", "--dataset", "shapes", "--out", str(run),
                 *TINY, "--set", "train.bf16=true"]) == 0
    assert json.loads((run / "metrics.json").read_text())["avg"] >= 0


def test_a_log_that_is_not_a_terminal_gets_one_line_per_epoch_and_no_library_chatter(tmp_path):
    """stderr redirected (CI, `2> log`): no carriage-return progress frames, one INFO line per
    epoch, and gensim's per-epoch INFO lines only with -v."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAER_", "TQDM_"))}
    daer = [sys.executable, "-m", "daer_core.cli.main"]
    train = ["train", "--preset", "daer", "--dataset", "shapes", *TINY]
    done = subprocess.run([*daer, *train, "--out", str(tmp_path / "run")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    err = done.stderr
    assert "\r" not in err
    epoch_lines = [line for line in err.splitlines() if " epoch 1/1: train_loss=" in line]
    assert [line.split(": ", 1)[1].split(" epoch")[0] for line in epoch_lines] == [
        "stage 1/3 text classification", "stage 2/3 image classification",
        "stage 3/3 relation training"]
    assert "gensim" not in err
    verbose = subprocess.run([*daer, "-v", *train, "--out", str(tmp_path / "run-v")],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert "gensim" in verbose.stderr
