import re

import pytest
import torch

from datamodules.bigram import CorpusBigram, SyntheticBigram


def test_synthetic_bigram_is_a_seeded_zipf_markov_chain():
    a, b, c = SyntheticBigram(32, seed=1).build(), SyntheticBigram(32, seed=1).build(), SyntheticBigram(32, seed=2).build()
    assert a.transitions.shape == (32, 32)
    torch.testing.assert_close(a.transitions.sum(-1), torch.ones(32))
    assert torch.equal(a.transitions, b.transitions) and not torch.equal(a.transitions, c.transitions)
    # Zipf marginal with exponent 1: p_0 / p_1 = 2, p_0 / p_3 = 4
    assert a.marginal[0] / a.marginal[1] == pytest.approx(2.0) and a.marginal[0] / a.marginal[3] == pytest.approx(4.0)
    # rows have mean equal to the marginal, so averaged over rows they are close to it
    assert (a.transitions.mean(0) - a.marginal).abs().max() < 0.05


def test_synthetic_bigram_does_not_depend_on_global_rng():
    torch.manual_seed(0)
    a = SyntheticBigram(8, seed=5).build()
    torch.manual_seed(123)
    assert torch.equal(a.transitions, SyntheticBigram(8, seed=5).build().transitions)


def test_corpus_bigram_counts_characters(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abab\nabba")
    model = CorpusBigram(path=str(path)).build()
    assert model.itos == ("\n", "a", "b")
    # transitions: a->b 3, b->a 2, b->\n 1, \n->a 1, b->b 1
    a, b, nl = 1, 2, 0
    assert model.transitions[a].tolist() == pytest.approx([0, 0, 1])
    assert model.transitions[b].tolist() == pytest.approx([1 / 4, 2 / 4, 1 / 4])
    assert model.transitions[nl].tolist() == pytest.approx([0, 1, 0])
    assert model.marginal.tolist() == pytest.approx([1 / 9, 4 / 9, 4 / 9])


def test_missing_corpus_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="data.bigram.path.*nope.txt"):
        CorpusBigram(path=str(missing))


def test_unreachable_hub_dataset_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="data.bigram.dataset.*data.bigram.path"):
        CorpusBigram(dataset="someone/tiny_shakespeare").build()


def test_corpus_from_a_dataset_id_uses_load_dataset_and_the_text_field(tmp_path):
    # a local dataset folder goes through the same `load_dataset(id, split=...)` call as a hub id
    folder = tmp_path / "tiny_corpus"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"content": "abab\\nab"}\n{"content": "ba"}\n')
    model = CorpusBigram(dataset=str(folder), text_field="content").build()
    assert model.itos == ("\n", "a", "b")
    assert model.transitions[1].tolist() == pytest.approx([0, 0, 1])  # a is always followed by b
    with pytest.raises(ValueError, match="text_field 'text'"):
        CorpusBigram(dataset=str(folder)).build()


def test_a_saved_bigram_gives_the_same_sequences_for_the_same_seed(tmp_path):
    import json

    from datamodules.bigram import SavedBigram
    from datamodules.generator import NoisyRecallGenerator

    original = SyntheticBigram(24, seed=7).build()
    original.save(tmp_path / "b.pt")
    np_file = tmp_path / "b.npy"
    original.save(np_file)
    (tmp_path / "tokens.json").write_text(json.dumps([chr(65 + i) for i in range(24)]))
    for loaded in (SavedBigram(str(tmp_path / "b.pt")).build(), SavedBigram(str(np_file), tokens=str(tmp_path / "tokens.json")).build()):
        torch.testing.assert_close(loaded.transitions, original.transitions, rtol=0, atol=1e-6)
    loaded = SavedBigram(str(tmp_path / "b.pt")).build()
    assert torch.equal(loaded.marginal, original.marginal)  # the .pt keeps the marginal
    a = NoisyRecallGenerator(original, seq_len=32).sample(16, torch.Generator().manual_seed(3))
    b = NoisyRecallGenerator(loaded, seq_len=32).sample(16, torch.Generator().manual_seed(3))
    assert torch.equal(a["tokens"], b["tokens"])
    assert SavedBigram(str(np_file), tokens=str(tmp_path / "tokens.json")).build().itos[:2] == ("A", "B")


def test_a_count_matrix_is_normalised_and_bad_files_are_refused_naming_them(tmp_path):
    import numpy as np

    from datamodules.bigram import SavedBigram

    counts = np.array([[0, 3, 1], [2, 0, 0], [0, 0, 0]], dtype=float)
    np.save(tmp_path / "counts.npy", counts)
    model = SavedBigram(str(tmp_path / "counts.npy"), kind="counts").build()
    torch.testing.assert_close(model.transitions[0], torch.tensor([0.0, 0.75, 0.25]))
    torch.testing.assert_close(model.transitions[2], model.marginal)  # a row with no count takes the marginal
    cases = {
        "notsquare.npy": (np.ones((3, 4)) / 4, "square (V, V) matrix"),
        "nan.npy": (np.array([[np.nan, 1.0], [0.5, 0.5]]), "finite and non-negative"),
        "rows.npy": (np.array([[0.2, 0.2], [0.5, 0.5]]), "rows [0] do not sum to 1"),
        "negative.npy": (np.array([[1.5, -0.5], [0.5, 0.5]]), "finite and non-negative"),
    }
    for name, (matrix, message) in cases.items():
        np.save(tmp_path / name, matrix)
        with pytest.raises(ValueError, match=re.escape(f"data.bigram.path '{tmp_path / name}'") + ".*" + re.escape(message)):
            SavedBigram(str(tmp_path / name)).build()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable .npy or .pt file"):
        SavedBigram(str(tmp_path / "junk.pt")).build()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SavedBigram(str(tmp_path / "missing.npy"))
