"""GSM8K with LASER through lm-evaluation-harness, offline, on tiny random Llama and Phi-3 models: the command end to
end, weights restored, the harness's own scores, the role map per architecture, and a selection that never reads
the test split."""
import json
from pathlib import Path

import pytest
import torch
import yaml
from lm_eval.api.model import LM

from datamodules.gsm8k import GSM8KDataModule, LOCAL_TASK, exemplar_questions, harness_task_file, render_task
from lightning_modules import lm_eval_results as lmr
from main import main
from tests.pipeline.test_cli import only_run_dir

TRAIN = [{"question": f"Ann has {i} pens and buys {i + 3} more. How many pens does she have?",
          "answer": f"She has {i} + {i + 3} = {2 * i + 3} pens.\n#### {2 * i + 3}"} for i in range(10)]
TEST = [{"question": f"A box holds {i} red and {2 * i} blue balls. How many balls are in the box?",
         "answer": f"{i} + {2 * i} = {3 * i}.\n#### {3 * i}"} for i in range(1, 6)]


@pytest.fixture
def gsm8k_dir(tmp_path) -> Path:
    d = tmp_path / "gsm8k"
    d.mkdir()
    for name, recs in (("train", TRAIN), ("test", TEST)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def run(model_dir, data_dir, root, *extra) -> Path:
    main(["test", "--config", "configs/gsm8k.yaml", "--model.init_args.model_name", model_dir,
          "--model.init_args.max_gen_toks", "6", "--model.init_args.batch_size", "4", "--data.init_args.data_dir", str(data_dir),
          "--data.init_args.limit", "3", "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
          "--trainer.accelerator", "cpu", "--report", "false", *extra])
    return only_run_dir(root)


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_the_command_writes_scores_generations_and_restores_every_variant(tiny_hf, gsm8k_dir, tmp_path, arch):
    laser = '{"out_L1@0.1": [{"matrix": "mlp_out", "layers": 1, "rho": 0.1}], "in_all@0": [{"matrix": "mlp_in", "rho": 0.0}]}'
    run_dir = run(tiny_hf[arch], gsm8k_dir, tmp_path, "--model.init_args.laser", laser, "--data.init_args.num_fewshot", "[0, 2]")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["model"]["dtype"] == "float32"  # auto: float32 on a CPU
    assert set(summary["variants"]) == {"full", "out_L1@0.1", "in_all@0"}
    for shots in ("0shot", "2shot"):
        assert summary["variants"]["full"][f"n_docs@{shots}"] == 3
        assert summary["variants"]["full"][f"truncated_prompts@{shots}"] == 0
        row = summary["variants"]["in_all@0"]
        assert row[f"delta_flexible@{shots}"] == pytest.approx(row[f"em_flexible@{shots}"] - summary["variants"]["full"][f"em_flexible@{shots}"])
        assert row[f"right_to_wrong_strict@{shots}"] + row[f"wrong_to_right_strict@{shots}"] <= 3
    gens = [json.loads(line) for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 3 * 3 * 2  # variants x documents x shot counts
    assert {g["question"] for g in gens} == {r["question"] for r in TEST[:3]}
    assert all(set(g) >= {"target", "generation", "extracted_strict", "correct_flexible"} for g in gens)
    # the truncated models write something else than the full one (the generations are the in-memory variant's)
    by = {(g["variant"], g["num_fewshot"], g["doc_id"]): g["generation"] for g in gens}
    # (a tiny random model's greedy text is insensitive to some truncations, so: at least one variant differs)
    assert any(by[("full", k, d)] != by[(v, k, d)] for v in ("out_L1@0.1", "in_all@0") for k in (0, 2) for d in range(3))
    task = yaml.safe_load((run_dir / "lm_eval_tasks" / f"{LOCAL_TASK}.yaml").read_text())
    assert task["include"] == str(harness_task_file()) and task["dataset_kwargs"]["data_files"]["test"] == str(gsm8k_dir / "test.jsonl")


def test_each_variant_is_evaluated_truncated_and_restored_bit_for_bit(tiny_hf, gsm8k_dir, tmp_path, monkeypatch):
    import lightning as L

    from lightning_modules import GSM8KModule, LaserSpec

    module = GSM8KModule(tiny_hf["llama"], laser={"x": [LaserSpec("mlp_out", 0.0, "all")]}, max_gen_toks=4, batch_size=2)
    data = GSM8KDataModule(num_fewshot=[1], data_dir=str(gsm8k_dir), limit=2)
    before = {n: p.detach().clone() for n, p in module.net.named_parameters()}
    seen = []
    import lm_eval

    original = lm_eval.simple_evaluate

    def spy(*args, **kwargs):  # what the harness is handed: the in-memory model, truncated or not
        down = dict(kwargs["model"].model.named_parameters())["model.layers.1.mlp.down_proj.weight"]
        seen.append(float(down.abs().sum()))
        return original(*args, **kwargs)

    monkeypatch.setattr(lm_eval, "simple_evaluate", spy)
    L.Trainer(accelerator="cpu", logger=False, default_root_dir=str(tmp_path), enable_progress_bar=False).test(module, data)
    assert len(seen) == 2 and seen[0] > 0 and seen[1] == 0.0  # full, then "x" at rank 0 while it ran
    for name, p in module.net.named_parameters():
        assert torch.equal(p, before[name]), name


# --- the harness's scores, not ours --------------------------------------------------------------------------------

# (target, generation, strict-match correct, flexible-extract correct), hand-checked against gsm8k_cot's regexes
EDGE_CASES = [
    ("1234", "So 1,000 + 234 = 1,234. The answer is 1,234.", True, True),  # commas are ignored
    ("18", "She pays $18 in total. The answer is $18.", False, True),  # strict wants a number right after "is "
    ("-5", "It drops by 5 degrees. The answer is -5.", True, True),  # negative numbers
    ("7", "He has 7 apples", False, True),  # no "The answer is": strict fails, flexible takes the last number
    ("42", "#### 42", False, True),  # no "The answer is" either: the dataset's own marker is not what strict reads
    ("12", "The answer is 13.", False, False),
]


class ReplayLM(LM):
    """An lm-eval LM that answers each prompt with a fixed generation, so the harness scores known text."""

    def __init__(self, generations: dict[str, str]):
        super().__init__()
        self.generations = generations

    def generate_until(self, requests, disable_tqdm=False):
        return [next(g for q, g in self.generations.items() if f"Q: {q}\nA:" in r.args[0][-len(q) - 20:]) for r in requests]

    def loglikelihood(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError


def test_reported_exact_match_is_what_the_harness_filters_and_metric_give(tmp_path):
    import lm_eval
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.tasks import TaskManager

    records = [{"question": f"Question number {i} about numbers?", "answer": f"Some work.\n#### {t}"} for i, (t, *_) in enumerate(EDGE_CASES)]
    data = tmp_path / "d"
    data.mkdir()
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    render_task(tmp_path / "tasks", LOCAL_TASK, {s: str(data / f"{s}.jsonl") for s in ("train", "test")})
    generations = {r["question"]: g for r, (_, g, *_) in zip(records, EDGE_CASES)}
    out = lm_eval.simple_evaluate(model=ReplayLM(generations), tasks=[LOCAL_TASK], num_fewshot=2, log_samples=True,
                                  task_manager=TaskManager(include_path=str(tmp_path / "tasks")))
    scores, docs = lmr.scores(out, LOCAL_TASK), lmr.documents(out, LOCAL_TASK)
    # the same texts through the harness's own filter and metric, configured from its gsm8k-cot.yaml
    cfg = yaml.safe_load(harness_task_file().read_text())
    metric = {k: v for k, v in cfg["metric_list"][0].items() if k not in ("metric", "aggregation", "higher_is_better")}
    for flt in cfg["filter_list"]:
        short = {v: k for k, v in lmr.FILTERS.items()}[flt["name"]]
        regex = flt["filter"][0]
        extract = RegexFilter(regex_pattern=regex["regex_pattern"], group_select=regex.get("group_select", 0))
        direct = []
        for i, (target, gen, *_) in enumerate(EDGE_CASES):
            extracted = list(extract.apply([[gen]], [records[i]]))[0][0]
            correct = exact_match_hf_evaluate(predictions=[extracted], references=[target], **metric)["exact_match"] == 1.0
            assert docs[i][f"extracted_{short}"] == extracted and docs[i][f"correct_{short}"] == correct, (short, gen)
            direct.append(correct)
        assert scores[f"em_{short}"] == pytest.approx(sum(direct) / len(direct))
    # and the hand-checked expectations, so a change in the harness's semantics shows up here
    assert [docs[i]["correct_strict"] for i in range(len(EDGE_CASES))] == [c[2] for c in EDGE_CASES]
    assert [docs[i]["correct_flexible"] for i in range(len(EDGE_CASES))] == [c[3] for c in EDGE_CASES]
    assert scores["em_strict"] == pytest.approx(2 / 6) and scores["em_flexible"] == pytest.approx(5 / 6)
    assert scores["em_strict_stderr"] == pytest.approx((2 / 6 * 4 / 6 / 5) ** 0.5)  # sample std / sqrt(n)


# --- roles per architecture ----------------------------------------------------------------------------------------

ROLE_NAMES = {  # layer 1's matrices of each role
    "gpt_neox": {"mlp_in": ["gpt_neox.layers.1.mlp.dense_h_to_4h.weight"], "mlp_out": ["gpt_neox.layers.1.mlp.dense_4h_to_h.weight"],
                 "attn_out": ["gpt_neox.layers.1.attention.dense.weight"]},
    "llama": {"mlp_in": ["model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight"],
              "mlp_out": ["model.layers.1.mlp.down_proj.weight"], "attn_out": ["model.layers.1.self_attn.o_proj.weight"]},
    "phi3": {"mlp_in": ["model.layers.1.mlp.gate_up_proj.weight"], "mlp_out": ["model.layers.1.mlp.down_proj.weight"],
             "attn_out": ["model.layers.1.self_attn.o_proj.weight"]},
}
ROLE_NAMES["mistral"] = ROLE_NAMES["qwen2"] = ROLE_NAMES["llama"]
SHAPES = {"mlp_in": (64, 32), "mlp_out": (32, 64), "attn_out": (32, 32)}  # hidden 32, MLP 64


@pytest.mark.parametrize("arch", sorted(ROLE_NAMES))
def test_the_role_map_truncates_the_intended_matrices(arch):
    from transformers import AutoModelForCausalLM

    from lightning_modules import LaserSpec
    from lightning_modules.pretrained import laser_ranks
    from tests.hf_models import tiny_config

    model = AutoModelForCausalLM.from_config(tiny_config(arch, 100))
    params = dict(model.named_parameters())
    for role, names in ROLE_NAMES[arch].items():
        ranks = laser_ranks(model, [LaserSpec(role, 0.25, 1)])
        assert sorted(ranks) == sorted(names), (arch, role)
        for name in names:
            shape = SHAPES[role] if not (arch == "phi3" and role == "mlp_in") else (128, 32)  # gate and up fused
            assert tuple(params[name].shape) == shape and ranks[name] == int(0.25 * min(shape))


def test_an_unknown_architecture_is_refused_naming_it():
    from transformers import GPT2Config, GPT2LMHeadModel

    from lightning_modules import LaserSpec
    from lightning_modules.pretrained import laser_ranks

    model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="architecture 'gpt2'.*known: gpt_neox, llama, mistral, phi3, qwen2"):
        laser_ranks(model, [LaserSpec("mlp_out", 0.1)])


# --- selection without the test split ------------------------------------------------------------------------------

def test_the_selection_protocol_never_reads_the_test_split(tiny_hf, gsm8k_dir, tmp_path):
    search = '{"matrices": ["mlp_out"], "layers": [1, "0-1"], "rhos": [0.0, 0.5]}'
    run_dir = run(tiny_hf["llama"], gsm8k_dir, tmp_path, "--model.init_args.laser", "{}", "--model.init_args.search", search,
                  "--data.init_args.selection_size", "4", "--data.init_args.num_fewshot", "[1]")
    summary = json.loads((run_dir / "summary.json").read_text())
    gens = [json.loads(line) for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    train_q, test_q = {r["question"] for r in TRAIN}, {r["question"] for r in TEST}
    selection = [g for g in gens if g["split"] == "selection"]
    # every selection document is a train document, none is a test document or a few-shot exemplar
    assert {g["question"] for g in selection} <= train_q and not {g["question"] for g in selection} & (test_q | exemplar_questions())
    assert len({g["question"] for g in selection}) == 4 and {g["variant"] for g in selection} == {
        "full", "mlp_out_L1@0", "mlp_out_L1@0.5", "mlp_out_L0-1@0", "mlp_out_L0-1@0.5"}
    # the selection task's only data file is the selection file: the harness had no test document to read
    task = yaml.safe_load((run_dir / "lm_eval_tasks" / "gsm8k_cot_selection.yaml").read_text())
    assert list(task["dataset_kwargs"]["data_files"]) == ["test"] and task["dataset_kwargs"]["data_files"]["test"].endswith("gsm8k_selection.jsonl")
    chosen = summary["results"]["gsm8k"]["selected"]["1shot"]
    scores = summary["results"]["gsm8k"]["scores"]["selection:1shot"]
    assert scores[chosen]["em_flexible"] == max(s["em_flexible"] for s in scores.values())
    # on test: only the full model and the chosen variant
    assert {g["variant"] for g in gens if g["split"] == "test"} == {"full", chosen}
    assert {g["question"] for g in gens if g["split"] == "test"} <= test_q


def test_bad_gsm8k_input_is_refused_before_a_model_loads(tmp_path, gsm8k_dir, capsys):
    base = ["test", "--config", "configs/gsm8k.yaml", "--trainer.default_root_dir", str(tmp_path / "runs")]
    with pytest.raises(SystemExit):
        main([*base, "--data.init_args.data_dir", str(tmp_path / "nowhere")])
    assert "nowhere/train.jsonl does not exist" in capsys.readouterr().err
    (gsm8k_dir / "test.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(SystemExit):
        main([*base, "--data.init_args.data_dir", str(gsm8k_dir)])
    assert "test.jsonl:1: a GSM8K record needs string fields 'question' and 'answer'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--data.init_args.num_fewshot", "[1, 9]"])
    assert "data.num_fewshot: each in 0..8" in capsys.readouterr().err
    # an answer without GSM8K's final "#### <number>": every target would be the whole rationale, exact match 0
    (gsm8k_dir / "test.jsonl").write_text(json.dumps(TEST[0]) + "\n" + json.dumps({"question": "q?", "answer": "It is 4."}) + "\n")
    with pytest.raises(SystemExit):
        main([*base, "--data.init_args.data_dir", str(gsm8k_dir)])
    assert "test.jsonl:2: the answer has no final '#### <number>' line" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_a_search_without_a_selection_split_is_refused_before_the_model_loads(tmp_path, gsm8k_dir, capsys, monkeypatch):
    # without a selection split the grid would be scored, and the choice made, on the test split
    import transformers

    def must_not_load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", must_not_load)
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--config", "configs/gsm8k.yaml", "--config", "configs/gsm8k_search.yaml",
              "--data.init_args.selection_size", "0", "--data.init_args.data_dir", str(gsm8k_dir),
              "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    assert "model.init_args.search scores its grid on a selection split, and data.init_args.selection_size is 0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("config", ["configs/gsm8k.yaml", "configs/pythia_ioi.yaml"])
@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_evaluation_only_configs_refuse_fit_and_validate_in_one_line(tmp_path, capsys, config, subcommand):
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--config", config, "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith("error: invalid configuration: ") and f"run `python main.py test --config {config}`" in err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


def short_context_model(tiny_hf, tmp_path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    small = tmp_path / "short_context"
    model = AutoModelForCausalLM.from_pretrained(tiny_hf["llama"])
    model.config.max_position_embeddings = 128  # the harness reads the context length from the config
    model.save_pretrained(small)
    AutoTokenizer.from_pretrained(tiny_hf["llama"]).save_pretrained(small)
    return small


@pytest.fixture
def no_weights_load(monkeypatch):
    import transformers

    def must_not_load(*a, **k):
        raise AssertionError("the model weights were loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", must_not_load)


def refused_before_load(capsys, root, *args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--config", "configs/gsm8k.yaml", "--trainer.default_root_dir", str(root), *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err and not Path(root).exists(), err
    return next(line for line in err.splitlines() if line.startswith("error: "))


def test_prompts_longer_than_the_context_are_refused_before_the_model_loads(tiny_hf, gsm8k_dir, tmp_path, capsys):
    small = short_context_model(tiny_hf, tmp_path)
    import transformers

    real = transformers.AutoModelForCausalLM.from_pretrained
    transformers.AutoModelForCausalLM.from_pretrained = lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded"))
    try:
        line = refused_before_load(capsys, tmp_path / "runs", "--model.init_args.model_name", str(small),
                                   "--data.init_args.data_dir", str(gsm8k_dir), "--data.init_args.num_fewshot", "[0, 2]")
    finally:
        transformers.AutoModelForCausalLM.from_pretrained = real
    # 2-shot prompts are ~340 tokens: beyond a context of 128 whatever max_gen_toks is
    assert line.startswith("error: invalid configuration: model.init_args.max_gen_toks 256 + the longest prompt (")
    assert "tokens at 2 shots" in line and "the model's context of 128 tokens" in line
    # 0 shots fit (their prompts are short), with a small generation budget: the run goes ahead and cuts nothing
    run_dir = run(str(small), gsm8k_dir, tmp_path / "ok", "--model.init_args.laser", "{}", "--data.init_args.num_fewshot", "[0]")
    assert json.loads((run_dir / "summary.json").read_text())["variants"]["full"]["truncated_prompts@0shot"] == 0


def test_a_chat_template_the_tokenizer_lacks_is_refused_before_the_model_loads(tiny_hf, gsm8k_dir, tmp_path, capsys,
                                                                               no_weights_load):
    from transformers import AutoTokenizer

    assert not AutoTokenizer.from_pretrained(tiny_hf["llama"]).chat_template
    line = refused_before_load(capsys, tmp_path / "runs", "--model.init_args.model_name", tiny_hf["llama"],
                               "--model.init_args.apply_chat_template", "true", "--data.init_args.data_dir", str(gsm8k_dir))
    assert line == (f"error: invalid configuration: model.init_args.apply_chat_template: the tokenizer of {tiny_hf['llama']} "
                    "has no chat template (a base model, not an instruct one): set apply_chat_template: false")


def test_a_selection_larger_than_the_train_pool_is_refused_before_the_model_loads(tiny_hf, gsm8k_dir, tmp_path, capsys,
                                                                                  no_weights_load):
    line = refused_before_load(capsys, tmp_path / "runs", "--model.init_args.model_name", tiny_hf["llama"],
                               "--data.init_args.data_dir", str(gsm8k_dir), "--data.init_args.selection_size", "11")
    assert line == (f"error: invalid configuration: data.init_args.selection_size 11 > the 10 documents of {gsm8k_dir}/train.jsonl "
                    "that are not few-shot exemplars")


@pytest.mark.parametrize("answer,why", [
    ("2 + 70 = 72.\n#### \u0667\u0662", "no final '#### <number>' line in ASCII digits"),  # Arabic-Indic digits
    ("2 + 70 = 72.\n#### \uff17\uff12", "no final '#### <number>' line in ASCII digits"),  # full-width digits
])
def test_answers_the_harness_can_never_match_are_refused(gsm8k_dir, answer, why):
    from datamodules.gsm8k import read_jsonl

    (gsm8k_dir / "test.jsonl").write_text(json.dumps(TEST[0]) + "\n" + json.dumps({"question": "q?", "answer": answer}) + "\n")
    with pytest.raises(ValueError, match=f"test.jsonl:2: the answer has {why}"):
        read_jsonl(gsm8k_dir / "test.jsonl")


def test_text_that_is_not_encodable_is_refused_naming_file_and_line(gsm8k_dir):
    from datamodules.gsm8k import read_jsonl

    # valid JSON (a lone surrogate escape), but no UTF-8 text: datasets would fail deep inside the harness
    (gsm8k_dir / "test.jsonl").write_text(json.dumps(TEST[0]) + "\n" + '{"question": "How many \\ud800?", "answer": "#### 4"}\n')
    with pytest.raises(ValueError, match=r"test.jsonl:2: the question is not encodable text \(surrogates not allowed"):
        read_jsonl(gsm8k_dir / "test.jsonl")


# --- the selection protocol across a sweep's tasks -----------------------------------------------------------------

def test_the_collected_table_selects_by_the_selection_split_and_never_by_test():
    from reports.table import selected

    def row(task, model, variant, sel, test):
        return {"task": task, "status": "completed", "model.init_args.model_name": model, "model.init_args.laser": {"task": task},
                "data.init_args.num_fewshot": [2], "variant": variant, "em_flexible@selection:2shot": sel,
                "em_flexible@2shot": test, "em_flexible_stderr@2shot": 0.01}

    rows = [row(0, "m1", "full", 0.40, 0.50), row(0, "m1", "a", 0.45, 0.20),  # a: best on selection, worst on test
            row(1, "m1", "full", 0.40, 0.50), row(1, "m1", "b", 0.30, 0.90),  # b: best on test, never chosen
            row(2, "m2", "full", 0.60, 0.61), row(2, "m2", "c", 0.60, 0.70)]  # a tie keeps the full model
    keys = ["model.init_args.model_name", "data.init_args.num_fewshot", "model.init_args.laser"]
    protocol = {"by": "em_flexible", "variant_keys": ["model.init_args.laser", "model.init_args.search"],
                "evaluation_keys": ["data.init_args.num_fewshot"]}  # as each task's summary declares it
    choice = {c["model.init_args.model_name"]: c for c in selected(rows, keys, {t: protocol for t in range(3)})}
    assert choice["m1"]["selected"] == "a" and choice["m1"]["em_flexible (test)"] == 0.20
    assert choice["m1"]["full em_flexible (test)"] == 0.50 and choice["m1"]["evaluation"] == "2shot"
    assert choice["m2"]["selected"] == "full"


@pytest.mark.slow
def test_a_gsm8k_sweep_runs_and_collects_the_selected_variant(tiny_hf, gsm8k_dir, tmp_path, capsys):
    from pipeline import sweep

    spec = {"base": "configs/gsm8k.yaml", "subcommand": "test", "grid": {
        "model.init_args.model_name": [tiny_hf["llama"]], "model.init_args.max_gen_toks": [4],
        "data.init_args.data_dir": [str(gsm8k_dir)], "data.init_args.limit": [2], "data.init_args.num_fewshot": [[1]],
        "data.init_args.selection_size": [3], "trainer.accelerator": ["cpu"],
        "model.init_args.laser": [{"in@0": [{"matrix": "mlp_in", "rho": 0.0}]}, {"out@0": [{"matrix": "mlp_out", "rho": 0.0}]}]}}
    path = tmp_path / "gsm8k_tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    sweep.main([str(path), "--root", str(tmp_path / "sweep")])
    rows = [r for r in __import__("csv").DictReader((tmp_path / "sweep" / "selected.csv").open())]
    assert len(rows) == 1 and rows[0]["evaluation"] == "1shot" and rows[0]["selected"] in ("full", "in@0", "out@0")
    assert "Selected on the selection split, reported on test:" in capsys.readouterr().out
    # the sweep's report: the selection table on the page, and W&B panels of the exact match the tasks logged
    from reports import wandb_report
    from reports.__main__ import main as reports_main

    reports_main([str(tmp_path / "sweep"), "--entity", "my-team", "--project", "p"])
    assert "Selected LASER variant per setting" in (tmp_path / "sweep" / "report" / "index.html").read_text()
    spec, _ = wandb_report.load(tmp_path / "sweep" / "report" / wandb_report.SPEC_FILE)
    (panel,) = spec["panels"]
    assert panel["groupby"] == "config.model.init_args.laser" and "test/full/em_flexible@1shot" in panel["y"]


def test_a_run_reaches_wandb_as_tables_and_its_wandb_report_plots_only_logged_keys(tiny_hf, gsm8k_dir, tmp_path, monkeypatch):
    """One offline run (two shot counts), read back from its W&B files: the scores and generations tables, and the
    report spec built from the run, whose every key the run logged."""
    import glob

    from reports import wandb_report
    from reports.__main__ import main as reports_main
    from tests.wandb_records import read_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = run(tiny_hf["llama"], gsm8k_dir, tmp_path, "--model.init_args.laser",
                  '{"x": [{"matrix": "mlp_out", "rho": 0.0}]}', "--data.init_args.num_fewshot", "[0, 1]")
    logged = read_run(str(run_dir))
    tables = {k: v for h in logged["history"] for k, v in h.items() if k.startswith("gsm8k/")}
    # variants x shot counts; variants x documents x shot counts
    assert tables["gsm8k/scores/nrows"] == 2 * 2 and tables["gsm8k/generations/nrows"] == 2 * 3 * 2
    files = run_dir / "wandb" / "offline-run-*" / "files"
    (path,) = glob.glob(str(files / tables["gsm8k/generations/path"]))
    table = json.loads(Path(path).read_text())
    gens = [json.loads(line) for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    rows = [dict(zip(table["columns"], r)) for r in table["data"]]
    assert [(r["variant"], r["question"], r["generation"]) for r in rows] == [(g["variant"], g["question"], g["generation"]) for g in gens]
    (path,) = glob.glob(str(files / tables["gsm8k/scores/path"]))
    table = json.loads(Path(path).read_text())
    scores = {(r[0], r[1]): dict(zip(table["columns"], r)) for r in table["data"]}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert scores[("test:1shot", "x")]["em_flexible"] == summary["variants"]["x"]["em_flexible@1shot"]

    reports_main([str(run_dir), "--entity", "my-team"])
    spec, _ = wandb_report.load(run_dir / "report" / wandb_report.SPEC_FILE)
    titles = {p["title"]: p["y"] for p in spec["panels"]}
    assert set(titles["em_flexible per variant and shot count"]) == {f"test/{v}/em_flexible@{k}shot" for v in ("full", "x") for k in (0, 1)}
    keys = {k for row in logged["history"] for k in row}
    assert {k for p in spec["panels"] for k in p["y"]} <= keys


def test_more_than_one_process_is_refused(tiny_hf, gsm8k_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(tiny_hf["llama"], gsm8k_dir, tmp_path / "runs", "--model.init_args.laser", "{}", "--trainer.devices", "2")
    assert "GSM8K runs in one process (got 2)" in capsys.readouterr().err


def test_instruct_models_get_the_chat_template_with_multiturn_exemplars(tiny_hf, gsm8k_dir, tmp_path, monkeypatch):
    import lm_eval
    from transformers import AutoModelForCausalLM, AutoTokenizer

    chat = tmp_path / "chat_model"
    AutoModelForCausalLM.from_pretrained(tiny_hf["llama"]).save_pretrained(chat)
    tok = AutoTokenizer.from_pretrained(tiny_hf["llama"])
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tok.save_pretrained(chat)
    prompts = []
    original = lm_eval.simple_evaluate

    def spy(*args, **kwargs):  # the prompts the harness built
        out = original(*args, **kwargs)
        prompts.extend(s["arguments"][0][0] for task in out["samples"].values() for s in task)
        return out

    monkeypatch.setattr(lm_eval, "simple_evaluate", spy)
    run_dir = run(str(chat), gsm8k_dir, tmp_path / "runs", "--model.init_args.laser", "{}", "--data.init_args.num_fewshot", "[2]",
                  "--model.init_args.apply_chat_template", "true", "--model.init_args.fewshot_as_multiturn", "true")
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    # 2 exemplars as user / assistant turns, then the question and the generation prompt
    assert prompts and all(p.count("<|user|>") == 3 and p.count("<|assistant|>") == 3 and p.endswith("<|assistant|>") for p in prompts)
