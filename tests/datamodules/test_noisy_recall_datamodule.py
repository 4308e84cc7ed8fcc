import torch

from datamodules import NoisyRecallDataModule, SyntheticBigram


def dm(**kw) -> NoisyRecallDataModule:
    return NoisyRecallDataModule(**{"bigram": SyntheticBigram(16, seed=0), "seq_len": 32, "batch_size": 4, "n_test": 64, "seed": 0, **kw})


def test_clean_test_set_has_no_noise_is_fixed_by_its_seed_and_not_by_the_training_seed():
    a, b = dm(seed=1), dm(seed=2)
    for d in (a, b):
        d.setup("fit")
    ta, tb = a.test_set.batch, b.test_set.batch
    assert torch.equal(ta["tokens"], tb["tokens"])
    after_trigger = ta["tokens"][:, 1:][ta["answer"] >= 0]
    assert after_trigger.numel() > 100 and not (after_trigger == a.noise_id).any()
    assert torch.equal(after_trigger, ta["answer"][ta["answer"] >= 0])
    c = dm(test_seed=7)
    c.setup("fit")
    assert not torch.equal(c.test_set.batch["tokens"], ta["tokens"])
    # training streams follow the training seed
    first = lambda d: next(iter(d.train_dataloader()))["tokens"]  # noqa: E731
    assert not torch.equal(first(a), first(b)) and torch.equal(first(a), first(dm(seed=1)))


def test_ood_outputs_use_disjoint_halves_and_vocab_links():
    d = dm(ood_outputs=True, test_seq_len=48)
    d.setup("fit")
    train = next(iter(d.train_dataloader()))
    train_answers = set(train["answer"][train["answer"] >= 0].tolist())
    test_answers = set(d.test_set.batch["answer"][d.test_set.batch["answer"] >= 0].tolist())
    assert train_answers and test_answers and not train_answers & test_answers
    assert d.test_set.batch["tokens"].shape == (64, 49) and d.seq_len == 48
    assert d.vocab_size == 17 and d.noise_id == 16
    assert dm(noise_token=3).vocab_size == 16
