"""What the model sees: bigram sources, the noisy-recall generator and its DataModule."""
from datamodules.bigram import BigramSource, CorpusBigram, SyntheticBigram
from datamodules.noisy_recall import NoisyRecallDataModule

__all__ = ["BigramSource", "CorpusBigram", "SyntheticBigram", "NoisyRecallDataModule"]
