"""What happens around training."""
from callbacks.run_summary import RunSummary

__all__ = ["RunSummary"]
