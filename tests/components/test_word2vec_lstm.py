"""``word2vec-lstm``: Word2Vec fitting, vector files, OOV / padding / truncation, state."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

from daer_core.errors import CheckpointError, ConfigError, PipelineError
from plugins.text.dual_region import DualRegionAttention, DualRegionParams
from plugins.text.tokenizers import WordsParams, WordTokenizer
from plugins.text.vectors import detect_format
from plugins.text.word2vec_lstm import (PAD_ID, UNK_ID, NotFittedError, Word2VecLSTMEncoder,
                                        Word2VecLSTMParams, make_word2vec_lstm)

TEXTS = ["a large red circle left of a small blue square",
         "a big green star above a little red cross",
         "the blue square is right of the red circle",
         "a small green cross under a large blue star"] * 3

SMALL = dict(vector_size=8, hidden_size=6, out_dim=5)


def encoder(attention=None, **kw) -> Word2VecLSTMEncoder:
    torch.manual_seed(0)
    return make_word2vec_lstm(Word2VecLSTMParams(**{**SMALL, **kw}), WordTokenizer(WordsParams()),
                              attention)


def test_defaults_are_the_paper_values():
    p = Word2VecLSTMParams()
    assert (p.vector_size, p.hidden_size, p.out_dim) == (300, 300, 300)
    assert p.vectors_path is None and p.pooling == "mean"


def test_prepare_before_fit_is_a_clear_error():
    with pytest.raises(NotFittedError, match=r"call fit\(train_texts\) or give "
                                             r"pipeline.text.encoder.params.vectors_path"):
        encoder().prepare(["a red circle"])


def test_fit_trains_word2vec_deterministically():
    a, b = encoder(), encoder()
    a.fit(TEXTS), b.fit(TEXTS)
    assert a.vocab[:2] == ["<pad>", "<unk>"] and a.vocab == b.vocab
    assert "circle" in a.index and len(a.vocab) == a.embedding.num_embeddings
    assert torch.equal(a.embedding.weight, b.embedding.weight)
    assert torch.all(a.embedding.weight[PAD_ID] == 0)
    assert a.embedding.weight[2:].abs().sum() > 0
    assert a.fit_report["training_token_coverage"] == 1.0
    # the learned <unk> starts at the mean word vector
    assert torch.allclose(a.unk_vector, a.embedding.weight[2:].mean(0), atol=1e-6)


def test_min_count_sends_rare_words_to_unk():
    enc = encoder(min_count=4)
    enc.fit(TEXTS + ["zebra stripes"])
    assert "zebra" not in enc.index and enc.fit_report["training_words_as_unk"] >= 2


def test_prepare_pads_marks_oov_truncates_and_counts():
    enc = encoder(max_tokens=4)
    enc.fit(TEXTS)
    out = enc.prepare(["red zzyzx circle", "", "a large red circle left of a blue square"])
    ids, lengths = out["ids"], out["lengths"]
    assert ids.dtype == lengths.dtype == torch.long
    assert ids.shape == (3, 4) and lengths.tolist() == [3, 1, 4]
    assert ids[0].tolist() == [enc.index["red"], UNK_ID, enc.index["circle"], PAD_ID]
    assert ids[1].tolist() == [UNK_ID, PAD_ID, PAD_ID, PAD_ID]   # empty text -> one <unk>
    assert ids[2].tolist() == [enc.index[w] for w in ["a", "large", "red", "circle"]]
    assert enc.counts["texts"] == 3 and enc.counts["empty_texts"] == 1
    assert enc.counts["truncated"] == 1 and enc.counts["oov_tokens"] == 1


def test_forward_shapes_and_padding_invariance():
    enc = encoder(attention=lambda d: DualRegionAttention(DualRegionParams(hidden=[8, 8]), d))
    enc.fit(TEXTS)
    enc.eval()
    batch = enc.prepare(["red circle", TEXTS[0]])
    states, mask = enc.token_states(batch)
    assert states.shape == (2, batch["ids"].shape[1], 6) and mask.sum().item() == 2 + 10
    out = enc(batch)
    assert out.shape == (2, 5)
    alone = enc(enc.prepare(["red circle"]))
    assert torch.allclose(out[0], alone[0], atol=1e-6)  # padding changes nothing


@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_the_padded_lstm_gives_the_packed_result(pooling, monkeypatch):
    """A forward-only LSTM runs on the padded batch (the fused kernel, no lengths copied to
    the host); its embeddings and gradients must be those of the packed LSTM."""
    enc = encoder(attention=lambda d: DualRegionAttention(DualRegionParams(hidden=[8, 8]), d),
                  pooling=pooling)
    enc.fit(TEXTS)
    batch = enc.prepare(["red circle", TEXTS[0], "a blue star"])
    assert not enc.packs(batch["ids"])
    results = []
    for packs in (True, False):
        monkeypatch.setattr(type(enc), "packs", lambda self, ids, packs=packs: packs)
        enc.zero_grad()
        out = enc(batch)
        out.square().sum().backward()
        results.append((out.detach(), enc.lstm.weight_hh_l0.grad.clone()))
    (packed, packed_grad), (padded, padded_grad) = results
    assert torch.allclose(padded, packed, atol=1e-6)
    assert torch.allclose(padded_grad, packed_grad, atol=1e-5)


def test_a_bidirectional_lstm_is_packed():
    enc = encoder(bidirectional=True)
    enc.fit(TEXTS)
    assert enc.packs(enc.prepare(TEXTS[:2])["ids"])


@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_pooling_choices_run(pooling):
    enc = encoder(pooling=pooling)
    enc.fit(TEXTS)
    assert enc(enc.prepare(TEXTS[:3])).shape == (3, 5)


def test_frozen_embeddings_learned_unk_and_padding_row_gets_no_gradient():
    enc = encoder(freeze_embeddings=False)
    enc.fit(TEXTS)
    enc(enc.prepare(["red zzyzx", "a"])).sum().backward()
    assert torch.all(enc.embedding.weight.grad[PAD_ID] == 0)
    assert enc.unk_vector.grad is not None and enc.unk_vector.grad.abs().sum() > 0
    frozen = encoder()
    frozen.fit(TEXTS)
    assert not frozen.embedding.weight.requires_grad and frozen.unk_vector.requires_grad
    zero = encoder(unk="zero")
    zero.fit(TEXTS)
    assert "unk_vector" in dict(zero.named_buffers()) and torch.all(zero.unk_vector == 0)


def test_export_import_state_rebuilds_an_identical_module():
    enc = encoder(attention=lambda d: DualRegionAttention(DualRegionParams(hidden=[4]), d))
    enc.fit(TEXTS)
    enc.eval()
    state, tensors = enc.export_state(), enc.state_dict()
    import json
    state = json.loads(json.dumps(state))  # must survive JSON
    torch.manual_seed(123)
    fresh = make_word2vec_lstm(Word2VecLSTMParams(**SMALL), WordTokenizer(WordsParams()),
                               lambda d: DualRegionAttention(DualRegionParams(hidden=[4]), d))
    fresh.import_state(state)
    fresh.load_state_dict(tensors)
    fresh.eval()
    batch = ["a red circle zzyzx", "blue star"]
    assert torch.equal(enc.prepare(batch)["ids"], fresh.prepare(batch)["ids"])
    assert torch.equal(enc(enc.prepare(batch)), fresh(fresh.prepare(batch)))
    with pytest.raises(CheckpointError, match="vector_size"):
        encoder(vector_size=4).import_state(state)


def write_vectors(tmp_path):
    kv = KeyedVectors(vector_size=8)
    words = ["Red", "circle", "blue", "square", "unused"]
    rng = np.random.default_rng(0)
    kv.add_vectors(words, rng.standard_normal((5, 8)).astype(np.float32))
    files = {"word2vec-text": tmp_path / "v.txt", "word2vec-binary": tmp_path / "v.bin",
             "keyedvectors": tmp_path / "v.kv", "glove-text": tmp_path / "glove.txt"}
    kv.save_word2vec_format(str(files["word2vec-text"]), binary=False)
    kv.save_word2vec_format(str(files["word2vec-binary"]), binary=True)
    kv.save(str(files["keyedvectors"]))
    lines = files["word2vec-text"].read_text().splitlines()[1:]  # GloVe: no header line
    files["glove-text"].write_text("\n".join(lines) + "\n")
    return kv, files


def test_vector_files_in_every_format_are_detected_and_read(tmp_path):
    kv, files = write_vectors(tmp_path)
    for fmt, path in files.items():
        assert detect_format(path) == fmt
        enc = encoder(vectors_path=str(path), normalize="none",
                      vectors_format="keyedvectors" if fmt == "keyedvectors" else "auto")
        enc.fit(["a red circle and a blue square", "red red green"])
        assert set(enc.vocab[2:]) == {"red", "circle", "blue", "square"}  # corpus words only
        # "Red" in the file answers for the lowercase token "red"
        assert np.allclose(enc.embedding.weight[enc.index["red"]].detach().numpy(), kv["Red"],
                           atol=1e-5), fmt
        assert enc.fit_report["training_words_as_unk"] == 3  # a, and, green


def test_a_pickled_vectors_file_is_only_loaded_when_asked_for(tmp_path):
    _, files = write_vectors(tmp_path)
    with pytest.raises(ConfigError, match="pickle.*vectors_format: keyedvectors"):
        encoder(vectors_path=str(files["keyedvectors"])).fit(["a red circle"])


def test_word_vectors_are_standardised_per_dimension_by_default(tmp_path):
    _, files = write_vectors(tmp_path)
    enc = encoder(vectors_path=str(files["word2vec-text"]))
    enc.fit(["a red circle and a blue square"])
    rows = enc.embedding.weight[2:].detach().numpy()   # the real words, not <pad>/<unk>
    assert np.allclose(rows.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(rows.std(axis=0), 1, atol=1e-4)


def test_vector_file_without_fit_and_whole_vocabulary(tmp_path):
    _, files = write_vectors(tmp_path)
    enc = encoder(vectors_path=str(files["glove-text"]), vectors_format="glove-text")
    ids = enc.prepare(["red unused zzz"])["ids"]   # no fit: the whole file is the vocabulary
    assert ids[0, 0] != UNK_ID and ids[0, 1] != UNK_ID and ids[0, 2] == UNK_ID
    enc = encoder(vectors_path=str(files["word2vec-text"]), vocabulary="file")
    enc.fit(["red"])
    assert "unused" in enc.index


def test_missing_vector_file_names_the_path_and_key(tmp_path):
    enc = encoder(vectors_path=str(tmp_path / "nope.bin"))
    with pytest.raises(ConfigError, match=r"pipeline.text.encoder.params.vectors_path.*nope.bin"):
        enc.fit(TEXTS)


def test_vector_width_mismatch_names_vector_size(tmp_path):
    _, files = write_vectors(tmp_path)
    enc = encoder(vectors_path=str(files["word2vec-text"]), vector_size=16)
    with pytest.raises(PipelineError, match="vector_size is 16; set it to 8"):
        enc.fit(TEXTS)
