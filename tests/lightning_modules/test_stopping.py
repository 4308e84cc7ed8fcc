"""Stopping each row at its own stop string gives the harness's generations in fewer steps."""


def requests(contexts, until, max_gen_toks):
    from lm_eval.api.instance import Instance

    return [Instance(request_type="generate_until", doc={}, idx=i,
                     arguments=(c, {"until": until, "max_gen_toks": max_gen_toks, "do_sample": False}))
            for i, c in enumerate(contexts)]


def generate(lm, model, contexts, until, max_gen_toks):
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = lm.generate_until(requests(contexts, until, max_gen_toks), disable_tqdm=True)
    finally:
        hook.remove()
    return out, len(calls)


def own_stop_strings(texts: list[str]) -> list[str] | None:
    """For each text, a 3-character piece early in it that no other text contains."""
    picks = []
    for i, t in enumerate(texts):
        pick = next((t[j:j + 3] for j in range(2, 12) if t[j:j + 3].strip() and len(t[j:j + 3]) == 3
                     and not any(t[j:j + 3] in u for k, u in enumerate(texts) if k != i)), None)
        if pick is None:
            return None
        picks.append(pick)
    return picks


def test_rows_ending_on_different_strings_stop_early_with_the_same_generations(tiny_hf):
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lightning_modules.stopping import hflm_stopping_each_row

    model = AutoModelForCausalLM.from_pretrained(tiny_hf["llama"]).eval()
    tok = AutoTokenizer.from_pretrained(tiny_hf["llama"])
    harness = HFLM(pretrained=model, tokenizer=tok, batch_size=4)
    ours = hflm_stopping_each_row()(pretrained=model, tokenizer=tok, batch_size=4)
    # prompts with different last tokens; four whose random continuations each hold a piece no other one holds
    candidates = ["Tom and", "Kenya is", "school of", "Brittany", "Mary gave", "The capital", "Helsinki", "went to the"]
    texts, _ = generate(harness, model, candidates, ["\x00never"], 32)
    contexts, free = [], []
    for c, t in zip(candidates, texts):
        if len(contexts) < 4 and own_stop_strings([*free, t]) is not None:
            contexts.append(c)
            free.append(t)
    stops = own_stop_strings(free)
    assert len(contexts) == 4 and stops is not None, texts  # the tiny model writes different text for each prompt
    assert [t for c, t in zip(candidates, texts) if c in contexts] == free  # batched alone or with others: the same
    theirs, steps_theirs = generate(harness, model, contexts, stops, 32)
    mine, steps_mine = generate(ours, model, contexts, stops, 32)
    assert mine == theirs  # what the harness scores is unchanged
    assert all(s not in m for s, m in zip(stops, mine)) and all(f.startswith(m) for f, m in zip(free, mine))
    # no stop string is in every row, so the harness's criterion never fires and the batch runs the full 32 tokens
    assert steps_theirs == 32 and steps_mine < steps_theirs
    # and the same rows with one common stop string: both stop at the same step
    common, steps_a = generate(harness, model, contexts, [free[0][3:6]], 32)
    same, steps_b = generate(ours, model, contexts, [free[0][3:6]], 32)
    assert same == common and steps_b <= steps_a
