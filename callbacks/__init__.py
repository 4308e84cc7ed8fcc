"""What happens around training: truncation, spectra, probes, gradient noise, and the run summary."""
from callbacks.attention_probe import AttentionProbe
from callbacks.gradient_noise import GradientNoise
from callbacks.hijack_probe import HijackProbe
from callbacks.laser_truncation import LaserTruncation
from callbacks.memory_probe import MemoryProbe
from callbacks.singular_attribution import SingularAttribution
from callbacks.weight_spectrum import WeightSpectrumLogger

__all__ = ["AttentionProbe", "GradientNoise", "HijackProbe", "LaserTruncation", "MemoryProbe", "SingularAttribution", "WeightSpectrumLogger"]
