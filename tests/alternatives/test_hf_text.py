"""The ``hf-text`` encoder on a tiny random BERT written by the test (no extra needed)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from daer_core.errors import ConfigError
from plugins.text.hf_text import HFTextEncoder, HFTextParams
from registry.errors import ParamsError

TEXTS = ["a red circle", "a large blue square left of a small green star"]


class Doubling(nn.Module):
    """A text attention stand-in: doubles real tokens, records the mask it was given."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.seen_mask = None

    def forward(self, x, mask=None):
        assert x.shape[-1] == self.dim
        self.seen_mask = mask
        return x * 2.0


def encoder(path, **kw) -> HFTextEncoder:
    return HFTextEncoder(HFTextParams(model_path=str(path), out_dim=6, **kw)).eval()


def test_prepare_uses_the_model_tokenizer_with_padding_and_truncation(tiny_bert):
    enc = encoder(tiny_bert, max_length=6)
    batch = enc.prepare(TEXTS)
    assert batch["input_ids"].shape == (2, 6)  # the long text was cut at max_length
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [1] * 6]
    assert enc.hf_tokenizer.convert_ids_to_tokens(batch["input_ids"][0, :5].tolist()) == [
        "[CLS]", "a", "red", "circle", "[SEP]"]


def test_mean_pooling_ignores_padding(tiny_bert):
    enc = encoder(tiny_bert)
    alone = enc(enc.prepare(["a red circle"]))
    padded = enc(enc.prepare(["a red circle", TEXTS[1]]))[0:1]
    assert alone.shape == (1, 6)
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        states, mask = enc.token_states(enc.prepare(TEXTS))
        expected = enc.proj(states[0, :5].mean(0))  # first text: 5 real tokens
    torch.testing.assert_close(enc(enc.prepare(TEXTS))[0], expected, atol=1e-5, rtol=1e-5)


def test_cls_pooling_takes_the_first_token(tiny_bert):
    enc = encoder(tiny_bert, pooling="cls")
    batch = enc.prepare(TEXTS)
    with torch.no_grad():
        states, _ = enc.token_states(batch)
        torch.testing.assert_close(enc(batch), enc.proj(states[:, 0]))
    mean = encoder(tiny_bert, pooling="mean")
    mean.load_state_dict(enc.state_dict())
    assert not torch.allclose(mean(batch), enc(batch))


def test_attention_slot_receives_token_states_and_mask(tiny_bert):
    made = []

    def factory(dim):
        made.append(Doubling(dim))
        return made[-1]

    enc = HFTextEncoder(HFTextParams(model_path=str(tiny_bert), out_dim=6), attention=factory)
    plain = encoder(tiny_bert)
    plain.load_state_dict(enc.state_dict())
    batch = enc.prepare(TEXTS)
    assert made[0].dim == 16
    with torch.no_grad():
        out, base = enc.eval()(batch), plain(batch)
    assert made[0].seen_mask.dtype == torch.bool
    assert made[0].seen_mask.tolist() == batch["attention_mask"].bool().tolist()
    # doubling the states doubles the pooled vector: proj(2p) = 2 proj(p) - bias
    torch.testing.assert_close(out, 2 * base - enc.proj.bias)


def test_freeze_options(tiny_bert):
    enc = encoder(tiny_bert, freeze="transformer")
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {"proj.weight", "proj.bias"}
    enc.train()
    assert not enc.transformer.training and enc.proj.training
    emb = encoder(tiny_bert, freeze="embeddings")
    frozen = {n for n, p in emb.named_parameters() if not p.requires_grad}
    assert frozen == {"transformer.embeddings.word_embeddings.weight"}


def test_gradients_reach_the_transformer(tiny_bert):
    enc = encoder(tiny_bert).train()
    enc(enc.prepare(TEXTS)).pow(2).sum().backward()
    grad = enc.transformer.get_input_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_missing_or_invalid_model_dir_is_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"pipeline.text.encoder.params.model_path: model "
                                          r"directory '.*nowhere' does not exist"):
        encoder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        encoder(tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"pipeline.text.encoder.params.package: package "
                                          r"'no-such-model-pkg' is not installed"):
        HFTextEncoder(HFTextParams(package="no-such-model-pkg"))


def test_registry_params_and_ignored_word_tokenizer(tiny_bert):
    from registry import load_plugins
    reg = load_plugins().registry
    with pytest.raises(ParamsError, match="exactly one of model_path"):
        reg.create("text_encoder", "hf-text", {})
    enc = reg.create("text_encoder", "hf-text", {"model_path": str(tiny_bert), "out_dim": 5},
                     tokenizer=lambda text: text.split(), attention=None)
    assert enc.out_dim == 5 and enc(enc.prepare(["a cat on the mat"])).shape == (1, 5)
    assert enc.export_state() == {"model_dir": str(tiny_bert)}


def test_loading_makes_no_network_connection(tiny_bert, monkeypatch):
    import socket

    def refuse(*_a, **_k):
        raise AssertionError("hf-text tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    enc = encoder(tiny_bert)
    assert enc(enc.prepare(["a cat"])).shape == (1, 6)
