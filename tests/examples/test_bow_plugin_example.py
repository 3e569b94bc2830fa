"""The out-of-tree plugin example (examples/daer-plugin-example).

Installing it for real would touch the shared environment, so the tests "install" it the
way an installer leaves it, minus the copy: a ``daer_plugin_example-<v>.dist-info`` with
the same entry point as its pyproject.toml, and its ``src/`` directory on ``sys.path``.
``importlib.metadata`` then finds it like any installed distribution.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib

import pytest
import torch

import registry
from daer_core.errors import CheckpointError, ConfigError, DataError
from daer_testkit import FAKE, REPO_ROOT, default_plugin_names

EXAMPLE = REPO_ROOT / "examples" / "daer-plugin-example"
PYPROJECT = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
DIST = PYPROJECT["project"]["name"]
VERSION = PYPROJECT["project"]["version"]
ENTRY_POINTS = PYPROJECT["project"]["entry-points"]["daer"]

TEXTS = ["a red circle", "a blue square", "red square on blue", "green circle", "red red"]


@pytest.fixture
def example_installed(plugin_site, monkeypatch):
    """The example visible to entry-point discovery, the default plugins blocked."""
    plugin_site.distribution(DIST, ENTRY_POINTS, version=VERSION,
                             summary=PYPROJECT["project"]["description"])
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.setenv(registry.ENV_DISABLE, ",".join(default_plugin_names()))
    yield plugin_site
    for name in [m for m in sys.modules if m.split(".")[0] == "daer_bow_plugin"]:
        del sys.modules[name]


@pytest.fixture
def bow_registry(clean_env, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    loaded = registry.load_plugins(autoload=False, load=["daer_bow_plugin", FAKE])
    assert [p.status for p in loaded.plugins] == ["loaded", "loaded"], loaded.plugins
    return loaded.registry


def make(reg, **params):
    return reg.create("text_encoder", "bag-of-words",
                      {"vocab_size": 64, "hidden_size": 16, "out_dim": 6, **params})


def test_pyproject_declares_the_plugin():
    assert ENTRY_POINTS == {"bag-of-words": "daer_bow_plugin"}
    assert (EXAMPLE / "src" / "daer_bow_plugin" / "__init__.py").is_file()
    assert (EXAMPLE / "README.md").is_file()


def test_plugins_list_shows_the_distribution(cli, example_installed):
    registry.set_default_plugins(None)
    res = cli("plugins", "list", "--json", plugins=None)
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    [comp] = [c for c in doc["components"] if c["name"] == "bag-of-words"]
    assert (comp["kind"], comp["plugin"], comp["distribution"], comp["version"]) == (
        "text_encoder", "bag-of-words", DIST, VERSION)
    [plugin] = [p for p in doc["plugins"] if p["name"] == "bag-of-words"]
    assert (plugin["status"], plugin["module"]) == ("loaded", "daer_bow_plugin")
    assert plugin["provides"] == ["text_encoder:bag-of-words"]

    res = cli("plugins", "show", "bag-of-words", "--json", plugins=None)
    doc = json.loads(res.out)
    assert doc["distribution"] == DIST
    assert {p["name"] for p in doc["params"]} >= {"mode", "vocab_size", "out_dim"}


def test_a_config_naming_bag_of_words_validates(cli, example_installed, tmp_path):
    path = tmp_path / "bow.yaml"
    path.write_text(textwrap.dedent("""
        preset: fake-base
        pipeline:
          text:
            encoder:
              name: bag-of-words
              params: {vocab_size: 100, out_dim: 12}
    """), encoding="utf-8")
    res = cli("-p", FAKE, "config", "validate", str(path), plugins=None)
    assert res.code == 0, res.err
    assert "bag-of-words (12)" in res.out and "fusion fake-concat (20)" in res.out
    res = cli("-p", FAKE, "config", "validate", str(path), "--set",
              "pipeline.text.encoder.params.mode=hashed", plugins=None)
    assert res.code == 2
    assert "pipeline.text.encoder.params.mode: Input should be 'vocabulary' or 'hashing'" in (
        res.err)
    res = cli("-p", FAKE, "config", "validate", str(path), "--set",
              "pipeline.text.attention.name=fake-identity", plugins=None)
    assert res.code == 2 and "set pipeline.text.attention to null" in res.err


def test_subprocess_discovery_with_pythonpath(example_installed):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(example_installed.root), str(EXAMPLE / "src"), str(REPO_ROOT)])}
    env.pop(registry.ENV_DISABLE_AUTOLOAD, None)
    code = ("import json, registry; r = registry.load_plugins(); "
            "s = r.registry.get('text_encoder', 'bag-of-words'); "
            "print(json.dumps([s.plugin, s.distribution, s.version]))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["bag-of-words", DIST, VERSION]


def test_vocabulary_mode_fit_prepare_forward(bow_registry):
    enc = make(bow_registry)
    with pytest.raises(RuntimeError, match="call fit"):
        enc.prepare(TEXTS)
    enc.fit(TEXTS)
    assert set(enc.vocabulary) == {"a", "red", "circle", "blue", "square", "on", "green"}
    assert enc.vocabulary["red"] == 1  # most texts first
    bow = enc.prepare(["red circle", "nothing known", ""])["bow"]
    assert bow.shape == (3, 64) and bow.device.type == "cpu"
    assert torch.allclose(bow.norm(dim=1), torch.tensor([1.0, 1.0, 0.0]))
    assert bow[1, 0] > 0 and bow[1, 1:].abs().sum() == 0  # unknown words share column 0
    assert enc({"bow": bow}).shape == (3, 6)


def test_vocabulary_is_capped_and_min_count_applies(bow_registry):
    enc = make(bow_registry, vocab_size=3, min_count=2)
    enc.fit(TEXTS)
    assert sorted(enc.vocabulary.values()) == [1, 2] and set(enc.vocabulary) <= {
        "a", "red", "circle", "blue", "square"}
    with pytest.raises(DataError, match="min_count=9"):
        make(bow_registry, min_count=9).fit(TEXTS)


def test_weightings(bow_registry):
    counts = {}
    for weighting in ("binary", "count", "log"):
        enc = make(bow_registry, weighting=weighting, normalize=False)
        enc.fit(TEXTS)
        counts[weighting] = enc.prepare(["red red red"])["bow"][0, enc.vocabulary["red"]].item()
    assert counts["binary"] == 1.0 and counts["count"] == 3.0
    assert counts["log"] == pytest.approx(torch.log1p(torch.tensor(3.0)).item())


def test_hashing_mode_needs_no_fit_and_is_stable_across_processes(bow_registry):
    enc = make(bow_registry, mode="hashing")
    from daer_bow_plugin.tokens import stable_bucket
    bow = enc.prepare(["red circle", "a blue square"])["bow"]
    for row, words in enumerate([["red", "circle"], ["a", "blue", "square"]]):
        assert set(bow[row].nonzero().flatten().tolist()) == {stable_bucket(w, 64) for w in words}
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(EXAMPLE / 'src')!r})
        from daer_bow_plugin.tokens import stable_bucket
        print([stable_bucket(w, 64) for w in ["red", "circle", "a", "blue", "square"]])
    """)
    outs = set()
    for seed in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outs.add(proc.stdout.strip())
    assert outs == {str([stable_bucket(w, 64) for w in ["red", "circle", "a", "blue", "square"]])}


def test_state_round_trip_rebuilds_the_same_encoder(bow_registry):
    torch.manual_seed(0)
    enc = make(bow_registry)
    enc.fit(TEXTS)
    enc.eval()
    state, tensors = json.loads(json.dumps(enc.export_state())), enc.state_dict()

    fresh = make(bow_registry)
    fresh.import_state(state)
    fresh.load_state_dict(tensors)
    fresh.eval()
    probe = ["blue circle", "green square on red"]
    assert torch.equal(fresh(fresh.prepare(probe)), enc(enc.prepare(probe)))

    with pytest.raises(CheckpointError, match="vocab_size=64 but"):
        make(bow_registry, vocab_size=32).import_state(state)
    with pytest.raises(CheckpointError, match="mode='vocabulary'"):
        make(bow_registry, mode="hashing").import_state(state)
    with pytest.raises(CheckpointError, match="no text encoder state"):
        make(bow_registry).import_state({})


def test_attention_is_rejected_with_the_config_key(bow_registry):
    with pytest.raises(ConfigError, match="pipeline.text.attention"):
        bow_registry.create("text_encoder", "bag-of-words", {}, tokenizer=None,
                            attention=lambda dim: None)


def test_encoder_learns(bow_registry):
    """A few gradient steps separate texts by colour word: the encoder is trainable."""
    torch.manual_seed(0)
    texts = [f"{c} {s} {p}" for c in ("red", "blue") for s in ("circle", "square", "star")
             for p in ("left", "right", "top")]
    target = torch.tensor([1.0 if t.startswith("red") else 0.0 for t in texts])
    enc = make(bow_registry, dropout=0.0)
    enc.fit(texts)
    head = torch.nn.Linear(enc.out_dim, 1)
    params = [*enc.parameters(), *head.parameters()]
    assert all(p.requires_grad for p in enc.parameters())
    inputs = enc.prepare(texts)

    def loss_value():
        logits = head(enc(inputs)).squeeze(1)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, target)

    first = loss_value().item()
    for _ in range(60):  # plain gradient descent (a torch.optim optimiser costs seconds to import)
        grads = torch.autograd.grad(loss_value(), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 0.5 * g
    assert loss_value().item() < 0.1 * first
    predictions = head(enc(enc.prepare(["red star top", "blue circle left"]))).squeeze(1)
    assert predictions[0] > 0 > predictions[1]


def test_example_config_uses_the_plugin():
    import yaml
    cfg = yaml.safe_load((EXAMPLE / "configs" / "bow-shapes.yaml").read_text())
    assert cfg["pipeline"]["text"]["encoder"]["name"] == "bag-of-words"
    assert cfg["pipeline"]["text"]["attention"] is None


def test_example_config_resolves_against_the_default_plugins(clean_env, monkeypatch):
    """The shipped config, checked against the real default plugins (names and params)."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    loaded = registry.load_plugins(load=["daer_bow_plugin"])
    try:
        loaded.registry.preset("daer")
    except registry.UnknownComponentError:
        pytest.skip("the default plugins providing preset 'daer' are not loadable here")
    from daer_core.config import load_run_config
    cfg = load_run_config(EXAMPLE / "configs" / "bow-shapes.yaml", registry=loaded.registry)
    assert cfg.pipeline.text.encoder.params["mode"] == "vocabulary"
    assert cfg.pipeline.text.attention is None
    assert cfg.train.stages.text.optimizer.name == "adam"


def test_the_installed_example_trains_through_the_daer_trainer(plugin_site, clean_env,
                                                               monkeypatch, tmp_path):
    """Installed beside the default plugins, the example's encoder is used by name from its
    shipped config and trained by the unchanged three-stage trainer."""
    plugin_site.distribution(DIST, ENTRY_POINTS, version=VERSION)
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    loaded = registry.load_plugins()
    spec = loaded.registry.get("text_encoder", "bag-of-words")
    assert spec.distribution == DIST and spec.plugin == "bag-of-words"
    from daer_core.config import load_run_config
    from daer_core.training.api import train_and_evaluate
    cfg = load_run_config(
        EXAMPLE / "configs" / "bow-shapes.yaml", registry=loaded.registry,
        overrides=["dataset.params={num_pairs: 30, num_classes: 3, image_size: 32}",
                   "pipeline.text.encoder.params.out_dim=8",
                   "pipeline.image.encoder.params.out_dim=8",
                   "pipeline.relation.params={in_dim: 16, hidden: [8, 8]}",
                   "train.stages.text.epochs=2", "train.stages.image.epochs=1",
                   "train.stages.relation.epochs=1", "train.threads=1",
                   "evaluate.examples=0"])
    metrics = train_and_evaluate(cfg, tmp_path / "run", registry=loaded.registry)
    assert 0.0 <= metrics["avg"] <= 1.0
    text_epochs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text()
                   .splitlines() if '"stage": "text"' in line and '"epoch"' in line]
    assert len(text_epochs) == 2 and text_epochs[1]["train_loss"] < text_epochs[0]["train_loss"]
    for name in [m for m in sys.modules if m.split(".")[0] == "daer_bow_plugin"]:
        del sys.modules[name]
