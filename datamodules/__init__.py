"""What the model sees: bigram sources, the noisy-recall generator and its DataModule, prompts for pretrained LMs,
GSM8K for lm-evaluation-harness."""
from datamodules.bigram import BigramSource, CorpusBigram, SavedBigram, SyntheticBigram
from datamodules.gsm8k import GSM8KDataModule
from datamodules.noisy_recall import NoisyRecallDataModule
from datamodules.prompts import PromptDataModule

__all__ = ["BigramSource", "CorpusBigram", "SavedBigram", "SyntheticBigram", "GSM8KDataModule", "NoisyRecallDataModule", "PromptDataModule"]
