"""The experiment kinds a run record declares (summary.json ``kinds``), and the record's schema version.

Writers declare: a LightningModule, a DataModule or a callback with ``record_kinds()`` adds its kinds (RunSummary
collects them). Readers dispatch on them (reports/kinds/), never on metric names or config keys.
"""
from __future__ import annotations

SCHEMA_VERSION = 3  # 2: kinds, variant_specs, files, sweep_task, undefined_metrics; 3: callback sections by declared
# name (run_record/contract.py), weights, machine (run_record/schema.py)

NOISY_RECALL = "noisy_recall"  # Chen, Bruna & Bietti: the noise token after triggers, LASER on the toy model
KNOWLEDGE_HIJACK = "knowledge_hijack"  # Wang & Sato: in-context vs global bigram, length generalisation
PRETRAINED_PROMPTS = "pretrained_prompts"  # a Hugging Face causal LM on IOI / factual prompts, with LASER
GSM8K = "gsm8k"  # few-shot chain of thought scored by lm-evaluation-harness, with LASER
