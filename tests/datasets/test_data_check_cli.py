"""``daer data check``: exit codes, text and JSON output, param overrides."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import registry
from daer_core.cli import main as cli_main

from dataset_fixtures import write_image

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wikipedia"


@pytest.fixture(autouse=True)
def dataset_plugins_only(monkeypatch):
    """Run the CLI with just the data command and the dataset plugins loaded."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("data_cmd",))
    loaded = registry.load_plugins(autoload=False,
                                   load=["plugins.datasets", "plugins.datasets.shapes"])
    registry.set_default_plugins(loaded)
    yield
    registry.set_default_plugins(None)


def wiki(root: Path, *, drop_image: bool = False) -> Path:
    (root / "texts").mkdir(parents=True)
    (root / "categories.list").write_text("a\nb\n")
    (root / "trainset_txt_img_cat.list").write_text("t1\ti1\t1\nt2\ti2\t2\n")
    (root / "testset_txt_img_cat.list").write_text("t3\ti3\t1\n")
    for t, i, c in (("t1", "i1", "a"), ("t2", "i2", "b"), ("t3", "i3", "a")):
        (root / "texts" / f"{t}.txt").write_text(f"text {t}")
        if not (drop_image and t == "t3"):
            write_image(root / "images" / c / f"{i}.jpg")
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(["data", "check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_clean_data_exits_0_with_counts(tmp_path, capsys):
    code, out, _ = run(capsys, str(wiki(tmp_path)), "--layout", "wikipedia",
                       "--set", "val_fraction=0.5")
    assert code == 0
    assert "usable as is" in out and "train 1, val 1, test 1" in out
    assert "no problems found" in out


def test_problems_exit_1_and_json_lists_them(tmp_path, capsys):
    code, out, _ = run(capsys, str(wiki(tmp_path, drop_image=True)), "--layout", "wikipedia",
                       "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["schema"] == "daer.data-report/1" and doc["usable"] is False
    assert doc["num_classes"] == 2 and doc["counts"]["test"] == 1
    (prob,) = [p for p in doc["problems"] if p["code"] == "images_missing"]
    assert prob["ids"] == ["t3"] and prob["count"] == 1 and prob["severity"] == "error"


def test_skip_override_makes_it_usable(tmp_path, capsys):
    code, out, _ = run(capsys, str(wiki(tmp_path, drop_image=True)), "--layout", "wikipedia",
                       "--set", "missing=skip", "--json")
    assert code == 0 and json.loads(out)["counts"]["test"] == 0


def test_unknown_layout_is_a_usage_error_with_suggestion(tmp_path, capsys):
    code, _, err = run(capsys, str(tmp_path), "--layout", "wikipedai")
    assert code == 2 and "did you mean 'wikipedia'" in err


def test_unknown_param_is_a_usage_error(tmp_path, capsys):
    code, _, err = run(capsys, str(tmp_path), "--layout", "wikipedia", "--set", "colour=red")
    assert code == 2 and "colour" in err


def test_unreadable_root_is_reported_as_a_problem(tmp_path, capsys):
    code, out, _ = run(capsys, str(tmp_path / "nope"), "--layout", "wikipedia", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["problems"][0]["code"] == "unreadable"
    assert "nope" in doc["problems"][0]["message"]


def test_generated_dataset_needs_no_path(capsys):
    code, out, _ = run(capsys, "--layout", "shapes", "--set", "num_pairs=30")
    assert code == 0 and "train 24, val 3, test 3" in out
    code, _, err = run(capsys, "somewhere", "--layout", "shapes")
    assert code == 2 and "drop PATH" in err


def test_file_layout_without_path_is_a_usage_error(capsys):
    code, _, err = run(capsys, "--layout", "wikipedia")
    assert code == 2 and "needs PATH" in err


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Wikipedia copy not present at {REAL}")
def test_real_wikipedia_check_json(capsys):
    code, out, _ = run(capsys, str(REAL), "--layout", "wikipedia", "--json")
    doc = json.loads(out)
    assert code == 1
    assert doc["info"]["documents"] == 2866 and doc["num_classes"] == 10
    assert doc["info"]["standard_split"] == {"train": 2173, "test": 693}
    codes = {p["code"]: p for p in doc["problems"]}
    assert codes["stray_characters_in_id"]["ids"] == ["Ab3150b0c281960b6a6d33407824fd40a-3"]
    assert codes["images_missing"]["count"] == 2866
