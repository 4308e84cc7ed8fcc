"""Wiring: the CLI, the run directory and the W&B mode. The science lives in lightning_modules/ and datamodules/."""
