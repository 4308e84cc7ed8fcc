"""Stop each generated row at its own stop string, without changing what the harness scores.

lm-evaluation-harness's HF backend builds one stopping criterion per stop string, and each says "stop" only once
*every* row of the batch contains that same string. A row that ends on another string (``Q:`` in one row, ``</s>``
in the next) or on the end-of-sequence token (which ``generate`` itself finishes per row) never makes any criterion
true, so the whole batch generates up to ``max_gen_toks``. Here a row is finished once *any* stop string appears
in its own generated tail; ``generate`` then pads that row and ends when every row is finished.

The scores do not change: the harness cuts each generation at the first stop string afterwards, a row is only
finished after that point, and under greedy decoding a row's tokens do not depend on the other rows.
"""
from __future__ import annotations

import torch
import transformers


class StopEachRow(transformers.StoppingCriteria):
    def __init__(self, tokenizer, stop_sequences: list[str], initial_decoder_input_length: int, batch_size: int):
        self.tokenizer, self.stops, self.start = tokenizer, [s for s in stop_sequences if s], initial_decoder_input_length
        # as the harness does: a few tokens more than the string's own encoding, in case it tokenizes differently
        self.lookback = max([len(tokenizer.encode(s, add_special_tokens=False)) for s in self.stops] or [0]) + 2
        self.done = torch.zeros(batch_size, dtype=torch.bool)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        tails = self.tokenizer.batch_decode(input_ids[:, self.start:][:, -self.lookback:])
        self.done |= torch.tensor([any(s in t for s in self.stops) for t in tails])
        return self.done.to(input_ids.device)


def stop_each_row_criteria(tokenizer, stop_sequences: list[str], initial_decoder_input_length: int,
                           batch_size: int) -> transformers.StoppingCriteriaList:
    """Drop-in for ``lm_eval.models.utils_hf.stop_sequences_criteria`` (same arguments)."""
    return transformers.StoppingCriteriaList([StopEachRow(tokenizer, stop_sequences, initial_decoder_input_length, batch_size)])


def hflm_stopping_each_row():
    """``HFLM`` whose ``generate`` calls use ``stop_each_row_criteria``; everything else is the harness's own."""
    import lm_eval.models.huggingface as hf

    class HFLMStopEachRow(hf.HFLM):
        def _model_generate(self, context, max_length, stop, **generation_kwargs):
            original = hf.stop_sequences_criteria
            hf.stop_sequences_criteria = stop_each_row_criteria  # the name _model_generate looks up
            try:
                return super()._model_generate(context, max_length, stop, **generation_kwargs)
            finally:
                hf.stop_sequences_criteria = original

    return HFLMStopEachRow
