"""CausalLMModule on tiny random GPT-NeoX, Llama and Phi-3 models: LASER by role, revisions, offline errors, and
the metric arithmetic on a hand-set model whose probabilities are known exactly."""
import math
import time

import pytest
import torch

from lightning_modules import CausalLMModule, LaserSpec
from lightning_modules.laser import truncated
from lightning_modules.pretrained import check_revision, laser_ranks
from lightning_modules.prompt_metrics import AnswerVsGenericMetrics

MLP_OUT = {"gpt_neox": "gpt_neox.layers.1.mlp.dense_4h_to_h.weight", "llama": "model.layers.1.mlp.down_proj.weight",
           "phi3": "model.layers.1.mlp.down_proj.weight"}
MLP_IN = {"gpt_neox": ["gpt_neox.layers.0.mlp.dense_h_to_4h.weight"],
          "llama": ["model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"],
          "phi3": ["model.layers.0.mlp.gate_up_proj.weight"]}
ATTN_OUT = {"gpt_neox": "gpt_neox.layers.1.attention.dense.weight", "llama": "model.layers.1.self_attn.o_proj.weight",
            "phi3": "model.layers.1.self_attn.o_proj.weight"}


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "phi3"])
def test_laser_by_role_hits_the_right_matrix_with_the_requested_rank_and_nothing_else(tiny_hf, arch):
    module = CausalLMModule(tiny_hf[arch], laser={
        "out": [LaserSpec("mlp_out", rho=0.25, layers=-1)],
        "in": [LaserSpec("mlp_in", rho=0.01, layers=0)],
        "attn": [LaserSpec("attn_out", rho=0.0, layers="1-1")],
    })
    assert module.variants["out"] == {MLP_OUT[arch]: 8}  # floor(0.25 * 32)
    assert module.variants["in"] == {name: 1 for name in MLP_IN[arch]}  # rho > 0 keeps at least rank 1
    assert module.variants["attn"] == {ATTN_OUT[arch]: 0}  # rho = 0 removes it
    before = {n: p.detach().clone() for n, p in module.net.named_parameters()}
    for ranks in module.variants.values():
        with truncated(module.net, ranks):
            for name, p in module.net.named_parameters():
                if name in ranks:
                    assert torch.linalg.matrix_rank(p).item() == ranks[name], name  # float32 tolerance
                else:
                    assert torch.equal(p, before[name]), f"{name} changed"
    for name, p in module.net.named_parameters():  # restored bit for bit
        assert torch.equal(p, before[name]), name


def test_bad_laser_specs_name_the_problem(tiny_hf):
    net = CausalLMModule(tiny_hf["gpt_neox"]).net
    with pytest.raises(ValueError, match="layer 5 out of range for 2 layers"):
        laser_ranks(net, [LaserSpec("mlp_out", 0.1, layers=5)])
    with pytest.raises(ValueError, match="'a-b' with a <= b < 2"):
        laser_ranks(net, [LaserSpec("mlp_out", 0.1, layers="1-4")])
    with pytest.raises(ValueError, match="matrix must be one of"):
        laser_ranks(net, [LaserSpec("mlp_mid", 0.1)])
    with pytest.raises(ValueError, match="rho must be in"):
        laser_ranks(net, [LaserSpec("mlp_out", 1.5)])


def test_pythia_revisions_are_checked_before_any_download():
    for ok in ("step0", "step1", "step512", "step1000", "step143000", "main"):
        check_revision("EleutherAI/pythia-410m", ok)
    for bad in ("step3", "step1500", "step144000", "latest"):
        with pytest.raises(ValueError, match="is not a Pythia checkpoint"):
            check_revision("EleutherAI/pythia-410m", bad)
    check_revision("meta-llama/Llama-3.2-1B", "a1b2c3")  # other models: any branch, tag or commit


def test_a_model_missing_from_the_cache_offline_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="hf download EleutherAI/pythia-14m --revision step1000") as info:
        CausalLMModule("EleutherAI/pythia-14m", revision="step1000")
    assert "HF_HUB_OFFLINE=1" in str(info.value) and "not in the local Hugging Face cache" in str(info.value)
    assert time.monotonic() - start < 10


def test_when_the_hub_does_not_answer_the_cli_goes_offline_before_anything_loads(monkeypatch, tmp_path, capsys):
    from main import main

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the 3-second check fails at once
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # restored after the CLI switches it
    start = time.monotonic()
    with pytest.raises(SystemExit):
        main(["test", "--config", "configs/pythia_ioi.yaml", "--model.init_args.model_name", "EleutherAI/pythia-14m",
              "--model.init_args.revision", "step1000", "--trainer.default_root_dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert "Hugging Face hub: offline (http://127.0.0.1:9 did not answer within 3 s" in err
    assert "hf download EleutherAI/pythia-14m --revision step1000" in err
    assert time.monotonic() - start < 20  # no half minute of retries


def test_metric_arithmetic_on_a_hand_set_model(tiny_hf):
    """All blocks zeroed: the last hidden state is LayerNorm(embedding) = h for every prompt, so the logits are
    W_U h, set here to a for the answer, b for " the", and 0 for every other token."""
    module = CausalLMModule(tiny_hf["gpt_neox"])
    net = module.net
    d, vocab = net.config.hidden_size, net.get_output_embeddings().weight.shape[0]
    answer, generic, competitor, a, b, c = 5, 7, 9, 2.0, 1.0, 0.5
    h = torch.tensor([1.0, -1.0] * (d // 2))  # mean 0, variance 1: LayerNorm leaves it as h / sqrt(1 + eps)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".layers." in name:
                p.zero_()
        net.get_input_embeddings().weight.copy_(h.expand_as(net.get_input_embeddings().weight))
        unemb = torch.zeros(vocab, d)
        unemb[answer], unemb[generic], unemb[competitor] = a * h / d, b * h / d, c * h / d
        net.get_output_embeddings().weight.copy_(unemb)
    scale = 1 / math.sqrt(1 + net.config.layer_norm_eps)
    z = math.exp(a * scale) + math.exp(b * scale) + math.exp(c * scale) + (vocab - 3)
    p_answer, p_generic = math.exp(a * scale) / z, math.exp(b * scale) / z

    metric = AnswerVsGenericMetrics(["ABBA", "BABA"])
    ids = torch.tensor([[3, 4, 11], [12, 1, 2]])
    logits = net(input_ids=ids).logits[:, -1]
    n = len(ids)
    metric.update(logits, torch.full((n,), answer), torch.full((n,), generic), torch.tensor([competitor, -1]), torch.tensor([0, 1]))
    out = metric.compute()
    for group in ("all", "ABBA", "BABA"):
        assert out[group]["p_answer"].item() == pytest.approx(p_answer, rel=1e-5)
        assert out[group]["p_generic"].item() == pytest.approx(p_generic, rel=1e-5)
        assert out[group]["log_ratio"].item() == pytest.approx((a - b) * scale, rel=1e-5)
        assert out[group]["acc"].item() == 1.0
    assert out["ABBA"]["logit_diff"].item() == pytest.approx((a - c) * scale, rel=1e-5)
    assert "logit_diff" not in out["BABA"]  # no competitor there


def test_a_folder_of_gguf_files_without_gguf_file_is_refused_before_anything_loads(tmp_path, capsys, monkeypatch):
    from main import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "tiny.Q4_0.gguf").write_bytes(b"GGUF")  # transformers would say "should have a model_type key"
    base = ["test", "--config", "configs/pythia_ioi.yaml", "--model.init_args.model_name", str(folder),
            "--trainer.default_root_dir", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as exit_info:
        main(base)
    assert exit_info.value.code == 2
    assert (f"model.init_args.model_name {folder} holds GGUF files only (tiny.Q4_0.gguf) and no config.json: set "
            "model.init_args.gguf_file") in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--model.init_args.gguf_file", "other.gguf"])
    assert f"model.init_args.gguf_file: {folder / 'other.gguf'} does not exist; {folder} holds tiny.Q4_0.gguf" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_weights_fingerprint_tells_checkpoints_apart_and_copies_together(tiny_hf, tmp_path):
    import shutil

    from lightning_modules.pretrained import weights_fingerprint

    shutil.copytree(tiny_hf["gpt_neox"], tmp_path / "copy")
    a, copy = CausalLMModule(tiny_hf["gpt_neox"]), CausalLMModule(str(tmp_path / "copy"))
    assert a.fingerprint == copy.fingerprint == a.run_info()["fingerprint"] and len(a.fingerprint) == 16
    assert CausalLMModule(tiny_hf["llama"]).fingerprint != a.fingerprint
    # one optimiser step moves every sampled value: a later checkpoint of one run differs
    net = a.net.train().requires_grad_(True)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    net(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    opt.step()
    assert weights_fingerprint(net) != copy.fingerprint
    with truncated(copy.net, {MLP_OUT["gpt_neox"]: 1}):  # a LASER variant is not the loaded checkpoint either
        assert weights_fingerprint(copy.net) != a.fingerprint
