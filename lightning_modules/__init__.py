"""What is trained or evaluated: the toy transformer, its LightningModule, metrics and LASER truncation."""
from lightning_modules.noisy_recall import NoisyRecallModule
from lightning_modules.transformer import Transformer, TransformerConfig

__all__ = ["NoisyRecallModule", "Transformer", "TransformerConfig"]
