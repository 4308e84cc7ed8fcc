"""Tiny random Hugging Face models (GPT-NeoX, Llama, Phi-3) and a tokenizer trained here, saved with save_pretrained:
the real loading code runs on them with no hub access."""
from __future__ import annotations

import os
import random
from pathlib import Path

import torch

from datamodules.prompt_sources import IOI_TEMPLATES, NAMES, OBJECTS, PLACES, builtin_facts, fill

PYTHIA_TOKENIZER = Path(__file__).resolve().parents[2] / "shared" / "data" / "pythia-20B_tokenizer.json"
ARCHS = ("gpt_neox", "llama", "phi3")  # saved for the CLI tests; tiny_config also builds mistral and qwen2
RARE_NAME = "Brittany"  # left out of the training text, so it stays several tokens, as in Pythia's tokenizer


def build_tokenizer():
    """Byte-level BPE (like GPT-NeoX's) trained on the prompt material, so its words are single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    names = [n for n in NAMES if n != RARE_NAME]
    text = []
    for _ in range(3000):
        a, b = rng.sample(names, 2)
        text.append(fill(rng.choice(IOI_TEMPLATES), a, b, rng.choice([a, b]), rng.choice(PLACES), rng.choice(OBJECTS)))
    text += [f["prompt"] + f["answer"] + " the" for f in builtin_facts()] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def tiny_config(arch: str, vocab_size: int):
    from transformers import GPTNeoXConfig, LlamaConfig, MistralConfig, Phi3Config, Qwen2Config

    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=2048, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if arch == "gpt_neox":
        return GPTNeoXConfig(**common)
    if arch == "llama":
        return LlamaConfig(**common, num_key_value_heads=2)
    if arch == "mistral":
        return MistralConfig(**common, num_key_value_heads=2)
    if arch == "qwen2":
        return Qwen2Config(**common, num_key_value_heads=2)
    return Phi3Config(**common, num_key_value_heads=4)


def save_tiny_model(directory: os.PathLike, arch: str, tokenizer=None) -> Path:
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer or build_tokenizer()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, len(tokenizer)))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)
