"""`daer index`, `daer search --index` and `daer serve` argument handling, run in-process."""
from __future__ import annotations

import json

import pytest

from daer_core.cli import main as cli_main

from search_cli import run_cli
from search_gallery import GALLERY, GALLERY_SET


def test_index_then_search_with_the_index(search_run, tmp_path, capsys):
    out = tmp_path / "idx"
    args = ["index", str(search_run), "--gallery", GALLERY, "--out", str(out), "--shard-size",
            "32", "--device", "cpu"]
    for kv in GALLERY_SET:
        args += ["--gallery-set", kv]
    code, stdout, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["schema"] == "daer.index-report/1"
    assert report["added"] == {"text": 80, "image": 80} and report["totals"]["image"] == 80
    assert report["ann"] == {"text": "flat", "image": "flat"}

    code, stdout, err = run_cli(capsys, "search", str(search_run), "--index", str(out),
                                "--text", "a small red circle", "--k", "4", "--candidates",
                                "20", "--json", "--device", "cpu")
    assert code == 0, err
    data = json.loads(stdout)
    assert data["results_kind"] == "image" and data["candidates"] == 20
    assert [r["rank"] for r in data["results"]] == [1, 2, 3, 4]

    code, exhaustive, err = run_cli(capsys, "search", str(search_run), "--index", str(out),
                                    "--text", "a small red circle", "--k", "4", "--exhaustive",
                                    "--json", "--device", "cpu")
    assert code == 0, err
    assert json.loads(exhaustive)["exhaustive"] is True

    code, stdout, _ = run_cli(capsys, *args)  # same gallery again: nothing to add
    assert code == 0 and "already indexed" in stdout


def test_usage_errors_exit_2(search_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "search", str(search_run), "--text", "red", "--candidates",
                           "5")
    assert code == 2 and "need --index" in err
    code, _, err = run_cli(capsys, "index", str(search_run), "--gallery", "nowhere/at/all",
                           "--out", str(tmp_path / "x"))
    assert code == 2 and "no such file or folder" in err
    code, _, err = run_cli(capsys, "index", str(search_run), "--gallery", "test", "--out",
                           str(tmp_path / "x"), "--shard-size", "0")
    assert code == 2 and "--shard-size" in err
    code, _, err = run_cli(capsys, "serve", str(search_run), "--port", "70000")
    assert code == 2 and "--port" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("someone's file")
    code, _, err = run_cli(capsys, "index", str(search_run), "--gallery", "test", "--out",
                           str(tmp_path / "full"), "--device", "cpu")
    assert code == 2 and "not empty" in err


def test_search_with_a_missing_index_is_a_clear_error(search_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "search", str(search_run), "--index", str(tmp_path),
                           "--text", "red", "--device", "cpu")
    assert code == 1 and "not a gallery index" in err


@pytest.mark.parametrize("command", ["index", "serve"])
def test_help_lists_the_options(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main.main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--index" in text if command == "serve" else "--gallery" in text
    if command == "serve":
        assert "127.0.0.1" in text


def test_a_small_gallery_gets_a_first_stage_without_fitting(search_run, tmp_path, capsys):
    """Every query scores a gallery of at most 100 items whole, so `--first-stage auto`
    fits nothing there (a 20-image index took 190 s, 151 s of it refining a stage that
    changed no result); an explicit `--first-stage learned` still fits one."""
    args = ["index", str(search_run), "--gallery", GALLERY, "--shard-size", "32",
            "--device", "cpu", "--json"]
    for kv in GALLERY_SET:
        args += ["--gallery-set", kv]
    code, stdout, err = run_cli(capsys, *args, "--out", str(tmp_path / "auto"))
    assert code == 0, err
    report = json.loads(stdout)
    assert report["totals"] == {"text": 80, "image": 80}
    assert report["first_stage"] in ("halves", "embedding") and not report["gallery_refined"]
    code, stdout, err = run_cli(capsys, *args, "--out", str(tmp_path / "learned"),
                                "--first-stage", "learned", "--refine-first-stage", "never")
    assert code == 0 and json.loads(stdout)["first_stage"] == "learned"
    # both rank the same: the whole 80-item gallery is scored exactly either way
    hits = []
    for name in ("auto", "learned"):
        code, stdout, err = run_cli(capsys, "search", str(search_run), "--index",
                                    str(tmp_path / name), "--text", "a small red circle",
                                    "--k", "5", "--json", "--device", "cpu")
        assert code == 0, err
        hits.append([r["id"] for r in json.loads(stdout)["results"]])
    assert hits[0] == hits[1]
