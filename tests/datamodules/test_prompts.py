"""PromptDataModule: IOI structure, single-token filtering (with Pythia's real tokenizer when present), facts,
CounterFact files, and length batches that need no padding."""
import json

import pytest
import torch

from datamodules import PromptDataModule
from datamodules.fact_hijack import FactHijack
from datamodules.prompt_sources import NAMES, builtin_facts
from datamodules.prompts import ioi_prompts, single_token_id, single_token_names
from tests.hf_models import PYTHIA_TOKENIZER


@pytest.fixture(scope="module")
def pythia_tokenizer():
    if not PYTHIA_TOKENIZER.exists():
        pytest.skip(f"the real Pythia tokenizer is not at {PYTHIA_TOKENIZER}")
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(PYTHIA_TOKENIZER))


def test_real_pythia_tokenizer_keeps_only_single_token_names_and_answers(pythia_tokenizer):
    kept = single_token_names(pythia_tokenizer, NAMES)
    assert "Mary" in kept and "John" in kept
    assert "Brittany" not in kept  # " Brittany" is several tokens in GPT-NeoX-20B's vocabulary
    assert len(kept) >= 40
    facts = [f for f in builtin_facts() if single_token_id(pythia_tokenizer, f["answer"]) is not None]
    assert len(facts) >= 100  # the curated set keeps at least 100 single-token-answer facts
    assert {"prompt": "Madrid is located in", "subject": "Madrid", "answer": " Spain", "type": "located_in"} in facts
    assert single_token_id(pythia_tokenizer, " the") is not None


def test_ioi_prompts_are_abba_and_baba_with_the_io_as_answer():
    rows = ioi_prompts(["Mary", "John", "Anna", "Paul"], 40, seed=0)
    assert [r["type"] for r in rows[:4]] == ["ABBA", "BABA", "ABBA", "BABA"]
    for r in rows:
        io, s = r["answer"].strip(), r["competitor"].strip()
        assert io != s and r["prompt"].count(s) == 2 and r["prompt"].count(io) == 1
        first_io, first_s = r["prompt"].index(io), r["prompt"].index(s)
        assert (first_io < first_s) == (r["type"] == "ABBA")
    assert ioi_prompts(["Mary", "John", "Anna", "Paul"], 40, seed=0) == rows  # seeded
    with pytest.raises(ValueError, match="at least 2 single-token names"):
        ioi_prompts(["Mary"], 4, seed=0)


def test_datamodule_ids_and_length_batches(tiny_hf):
    dm = PromptDataModule(task="ioi", tokenizer=tiny_hf["gpt_neox"], n_prompts=60, batch_size=8)
    assert dm.prompt_types == ["ABBA", "BABA"] and dm.noise_id == dm.tokenizer(" the")["input_ids"][0]
    assert "Brittany" not in " ".join(dm.dataset["prompt"])  # filtered out: several tokens in this tokenizer
    seen = []
    for batch in dm.test_dataloader():
        assert batch["input_ids"].ndim == 2 and len(batch["input_ids"]) <= 8  # one length per batch: no padding
        seen += batch["answer_id"].tolist()
    assert len(seen) == 60
    row = dm.dataset[0]
    assert dm.tokenizer.decode([row["answer_id"]]) == row["answer"] and dm.tokenizer.decode([row["competitor_id"]]) == row["competitor"]
    assert dm.tokenizer.decode(row["input_ids"]) == row["prompt"]


def test_builtin_facts_and_counterfact_files(tiny_hf, tmp_path):
    facts = PromptDataModule(task="facts", tokenizer=tiny_hf["llama"], batch_size=16)
    assert set(facts.prompt_types) == {"capital_of", "continent", "language", "located_in"}
    assert all(c == -1 for c in facts.dataset["competitor_id"])
    records = [{"requested_rewrite": {"prompt": "{} is located in", "subject": "Madrid", "relation_id": "P17",
                                      "target_true": {"str": "Spain"}}},
               {"requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Paris", "relation_id": "P103",
                                      "target_true": {"str": "French"}}}]
    path = tmp_path / "counterfact.json"
    path.write_text(json.dumps(records))
    dm = PromptDataModule(task="facts", tokenizer=tiny_hf["llama"], facts=str(path))
    assert dm.dataset["prompt"] == ["Madrid is located in", "The mother tongue of Paris is"]
    assert dm.prompt_types == ["P103", "P17"]
    assert dm.tokenizer.decode([dm.dataset[0]["answer_id"]]) == " Spain"
    with pytest.raises(FileNotFoundError, match="data.facts: no such file"):
        PromptDataModule(task="facts", tokenizer=tiny_hf["llama"], facts=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="data.generic_token"):
        PromptDataModule(task="facts", tokenizer=tiny_hf["llama"], generic_token=" the the the")
    assert torch.is_tensor(next(iter(dm.test_dataloader()))["input_ids"])
    # knowledge-hijack prompts from the same file: the counterfactual is the other fact's answer of that relation
    records.append({"requested_rewrite": {"prompt": "{} is located in", "subject": "Berlin", "relation_id": "P17",
                                          "target_true": {"str": "Germany"}}})
    path.write_text(json.dumps(records))
    hijack = PromptDataModule(task="hijack", tokenizer=tiny_hf["llama"], facts=str(path),
                              hijack=FactHijack(n=[2], k=[0], distance=[0], facts_per_cell=5))
    rows = sorted(hijack.dataset["prompt"])
    assert rows == ["Berlin is located in Spain. Berlin is located in Spain. Berlin is located in",
                    "Madrid is located in Germany. Madrid is located in Germany. Madrid is located in"]
    assert hijack.prompt_types == ["n2_k0_d0"] and hijack.hijack.n == [2]


def test_ioi_objects_take_the_article_they_need():
    from datamodules.prompt_sources import IOI_TEMPLATES, fill
    from datamodules.prompts import ioi_prompts

    assert fill(IOI_TEMPLATES[0], "Mary", "John", "John", "store", "apple").endswith("John gave an apple to")
    assert fill(IOI_TEMPLATES[0], "Mary", "John", "John", "store", "ring").endswith("John gave a ring to")
    prompts = [p["prompt"] for p in ioi_prompts(["Mary", "John", "Alice", "Bob"], 400, seed=0)]
    assert any(" an apple" in p for p in prompts) and not any(" a apple" in p or " a a" in p for p in prompts)
