"""What is trained or evaluated: the toy transformer and pretrained causal LMs, their metrics, LASER truncation."""
from lightning_modules.causal_lm import CausalLMModule
from lightning_modules.gsm8k import GSM8KModule
from lightning_modules.noisy_recall import NoisyRecallModule
from lightning_modules.pretrained import LaserGrid, LaserSpec
from lightning_modules.transformer import Transformer, TransformerConfig

__all__ = ["CausalLMModule", "GSM8KModule", "LaserGrid", "LaserSpec", "NoisyRecallModule", "Transformer", "TransformerConfig"]
