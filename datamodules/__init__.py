"""What the model sees: bigram sources, the noisy-recall generator and its DataModule, prompts for pretrained LMs."""
from datamodules.bigram import BigramSource, CorpusBigram, SavedBigram, SyntheticBigram
from datamodules.noisy_recall import NoisyRecallDataModule
from datamodules.prompts import PromptDataModule

__all__ = ["BigramSource", "CorpusBigram", "SavedBigram", "SyntheticBigram", "NoisyRecallDataModule", "PromptDataModule"]
