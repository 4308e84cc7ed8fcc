"""A real pretrained model (SmolLM2-135M-Instruct, GGUF) through the real commands: what holds for a trained model and
fails for a random one (IOI far above chance, a factual relation above chance, "The capital of France is" -> " Paris"),
every LASER variant restored bit for bit, predictions.jsonl auditing the means, and GSM8K end to end with the chat
template. `pytest -m real_weights` runs these alone (about 2 minutes on 2 cores)."""
import json
import math

import pytest
import torch

from main import main
from tests.pipeline.test_cli import only_run_dir

# one worker runs them all, so the module-scoped model below loads once
pytestmark = [pytest.mark.real_weights, pytest.mark.xdist_group("real_weights")]
LASER = '{"mlp_out_L27-29@0.01": [{"matrix": "mlp_out", "layers": "27-29", "rho": 0.01}]}'


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def prompts_run(smollm2, root, config: str, *extra) -> tuple[dict, list[dict]]:
    main(["test", "--config", config, "--model.init_args.model_name", smollm2["folder"], "--model.init_args.gguf_file",
          smollm2["gguf_file"], "--model.init_args.laser", LASER, "--trainer.default_root_dir", str(root),
          "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false", "--report", "false", *extra])
    run = only_run_dir(root)
    predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    return json.loads((run / "summary.json").read_text()), predictions


def test_ioi_is_far_above_chance_and_predictions_audit_the_means(smollm2, tmp_path):
    summary, predictions = prompts_run(smollm2, tmp_path, "configs/pythia_ioi.yaml", "--data.init_args.n_prompts", "96")
    full = summary["variants"]["full"]
    # measured: accuracy 0.83, logit_diff +4.1, P(IO) 0.49 on 200 prompts; a random model: accuracy ~0, logit_diff ~0
    assert full["acc"] >= 0.6 and full["logit_diff"] >= 2.0 and full["p_answer"] > 3 * full["p_generic"]
    assert summary["model"]["architecture"] == "llama" and summary["model"]["gguf_file"]["dequantised_to"] == "float32"
    # one record per prompt, every variant's numbers: the means in summary.json are these records' means
    assert len(predictions) == 96 and all(set(p["variants"]) == {"full", "mlp_out_L27-29@0.01"} for p in predictions)
    for variant in ("full", "mlp_out_L27-29@0.01"):
        for metric in ("p_answer", "p_generic", "logit_diff"):
            mean = sum(p["variants"][variant][metric] for p in predictions) / len(predictions)
            assert mean == pytest.approx(summary["variants"][variant][metric], rel=1e-5), (variant, metric)
        acc = sum(p["variants"][variant]["argmax"] == p["answer"] for p in predictions) / len(predictions)
        assert acc == pytest.approx(summary["variants"][variant]["acc"], abs=1e-6)
    assert not any(" a a" in p["prompt"] or " a apple" in p["prompt"] for p in predictions)  # "an apple"


def test_a_factual_relation_is_above_chance(smollm2, tmp_path):
    summary, _ = prompts_run(smollm2, tmp_path, "configs/pythia_facts.yaml", "--data.init_args.n_prompts", "96")
    language = summary["variants"]["full:language"]
    # measured on the first 96 facts: 0.50 of "The official language of <country> is" -> the language, P 0.19; chance
    # over 49152 tokens is ~0
    assert language["acc"] >= 0.3 and language["p_answer"] >= 0.1


@pytest.fixture(scope="module")
def loaded(smollm2):
    from lightning_modules import CausalLMModule
    from lightning_modules.pretrained import LaserGrid

    grid = LaserGrid(matrices=["mlp_in", "mlp_out", "attn_out", "attn_q", "attn_k", "attn_v"], layers=["27-29"], rhos=[0.0, 0.1])
    return CausalLMModule(smollm2["folder"], gguf_file=smollm2["gguf_file"], search=grid)


def test_greedy_continuation_of_a_fact(loaded, smollm2):
    from lightning_modules.pretrained import load_tokenizer

    tokenizer = load_tokenizer(smollm2["folder"], "main", gguf_file=smollm2["gguf_file"])
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = loaded.net.generate(ids, max_new_tokens=4, do_sample=False)
    assert " Paris" in tokenizer.decode(out[0, ids.shape[1]:])


def test_every_laser_variant_is_restored_bit_for_bit(loaded, smollm2, tmp_path):
    import lightning as L

    from lightning_modules.pretrained import weights_fingerprint

    from datamodules import PromptDataModule

    before = {k: v.clone() for k, v in loaded.net.state_dict().items()}
    data = PromptDataModule(tokenizer=smollm2["folder"], gguf_file=smollm2["gguf_file"], n_prompts=16)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path))
    trainer.test(loaded, datamodule=data, verbose=False)
    assert len(loaded.variants) == 13  # full and the 12 grid points, each truncated while it was evaluated
    after = loaded.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert weights_fingerprint(loaded.net) == loaded.fingerprint  # the checkpoint as loaded, after every variant
    # the attention roles are SmolLM2's own projections (9 query heads, 3 key/value heads of 64)
    assert loaded.variants["attn_k_L27-29@0.1"] == {f"model.layers.{i}.self_attn.k_proj.weight": 19 for i in (27, 28, 29)}
    assert trainer.callback_metrics["test/mlp_out_L27-29@0/p_answer"] != trainer.callback_metrics["test/full/p_answer"]


def test_the_gap_splits_into_layers_exactly_and_the_weights_fingerprint_is_stable(loaded, smollm2):
    from datamodules import PromptDataModule
    from lightning_modules.pretrained import weights_fingerprint
    from lightning_modules.pretrained_attribution import PromptBatch, layer_parts

    data = PromptDataModule(tokenizer=smollm2["folder"], gguf_file=smollm2["gguf_file"], n_prompts=24)
    data.setup("test")
    b = next(iter(data.split_loader("test")))
    parts = layer_parts(loaded.net, PromptBatch(b["input_ids"], b["answer_id"], b["generic_id"]))
    total = parts.pop("total")
    assert len(parts) == 2 + 2 * 30 and (sum(parts.values()) - total).abs().max() < 1e-4
    assert float(total.mean()) > 1.0  # a trained model: IOI's answer well above " the"
    assert len(loaded.fingerprint) == 16 and weights_fingerprint(loaded.net) == loaded.fingerprint


def test_knowledge_hijack_end_to_end_statements_in_context_move_the_answer(smollm2, tmp_path):
    hijack = '{"n": [0, 4], "k": [0], "distance": [0], "length": [null], "facts_per_cell": 12}'
    summary, predictions = prompts_run(smollm2, tmp_path, "configs/smollm2_hijack.yaml", "--data.init_args.hijack", hijack)
    cells = {c["n"]: c for c in summary["results"]["hijack"]["variants"]["full"]["cells"]}
    assert len(predictions) == 24 and cells[0]["prompts"] == cells[4]["prompts"] == 12
    # a real model: with no statement the fact wins; four counterfactual statements raise the counterfactual's
    # probability and its share of the pair (measured: win rate 0.25 -> 0.75, P(B_fake) 0.004 -> 0.49, gap -3.0 -> +2.9)
    assert cells[0]["win"] <= 0.4 and cells[4]["win"] >= cells[0]["win"] + 0.3
    assert cells[4]["p_fake"] > 10 * cells[0]["p_fake"] and cells[4]["gap"] > cells[0]["gap"] + 3.0


def test_gsm8k_runs_end_to_end_with_the_chat_template(smollm2, tmp_path):
    from tests.lightning_modules.test_gsm8k import TEST, TRAIN

    data = tmp_path / "gsm8k"
    data.mkdir()
    for name, recs in (("train", TRAIN), ("test", TEST)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    main(["test", "--config", "configs/gsm8k.yaml", "--model.init_args.model_name", smollm2["folder"],
          "--model.init_args.gguf_file", smollm2["gguf_file"], "--model.init_args.laser", LASER,
          "--model.init_args.apply_chat_template", "true", "--model.init_args.fewshot_as_multiturn", "true",
          "--model.init_args.max_gen_toks", "32", "--model.init_args.batch_size", "2", "--data.init_args.data_dir", str(data),
          "--data.init_args.limit", "2", "--data.init_args.num_fewshot", "[1]", "--trainer.default_root_dir", str(tmp_path / "runs"),
          "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false", "--report", "false"])
    run = only_run_dir(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    gens = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    assert summary["status"] == "completed" and len(gens) == 2 * 2  # 2 problems x (full + 1 variant)
    assert all(g["generation"].strip() for g in gens)  # a real model writes an answer, not nothing
    # the model's own chat template (from the GGUF file), the exemplar as an earlier turn
    assert all(g["prompt"].count("<|im_start|>user") == 2 and "<|im_start|>assistant" in g["prompt"] for g in gens)
    scores = summary["results"]["gsm8k"]["scores"]["test:1shot"]
    assert set(scores) == {"full", "mlp_out_L27-29@0.01"} and all(0 <= s["em_flexible"] <= 1 for s in scores.values())
    assert not math.isnan(summary["variants"]["full"]["em_flexible@1shot"])
