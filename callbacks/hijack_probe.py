"""HijackProbe: at the end of training, who wins after a final trigger q, the in-context answer o or the global b?"""
from __future__ import annotations

import math
from dataclasses import asdict, replace
from typing import Any

import lightning as L
import torch

from callbacks.common import log_scalars, network, require_generator
from datamodules import hijack_prompts
from lightning_modules import hijack_theory, memory
from lightning_modules.attribution import attention_patterns, logit_split, traced_forward
from lightning_modules.metrics import evaluate_recall
from lightning_modules.laser import rank_for, target_groups, target_shapes, truncated
from run_record.kinds import KNOWLEDGE_HIJACK
from run_record.names import CONSTRUCTED, FULL, hijack_key, laser_variant, prev_token_key
from run_record.contract import RecordedCallback, HIJACK_PROBE


@torch.no_grad()
def prev_token_attention(net: torch.nn.Module, tokens: torch.Tensor, t_train: int, bins: int = 16, layer: int = 0) -> dict[str, Any]:
    """Layer ``layer``'s attention from each position to the previous one (the previous-token head the induction head
    reads), averaged over positions inside the training length (1 .. T_train - 1) and beyond it (T_train .. L - 1),
    and as a profile over ``bins`` equal stretches of the sequence: ``[[first position, last position, mass], ...]``."""
    prev = attention_patterns(net, tokens)[layer].diagonal(-1, -2, -1)  # (B, L - 1): query t + 1 -> key t
    length = tokens.shape[1]
    by_position = prev.mean(0)  # position t + 1
    out: dict[str, Any] = {"inside": float(by_position[: t_train - 1].mean())}
    out["beyond"] = float(by_position[t_train - 1:].mean()) if length > t_train else None
    edges = torch.linspace(1, length, bins + 1).round().long().tolist()
    out["profile"] = [[a, b - 1, float(by_position[a - 1: b - 1].mean())] for a, b in zip(edges, edges[1:]) if b > a]
    return out


class HijackProbe(RecordedCallback, L.Callback):
    """On designed prompts (``datamodules/hijack_prompts.py``), for each number n of in-context pairs (q, o), test
    length and placement, and with the global-bigram FF (``ff_target``) kept at each rank fraction in ``ff_rhos``:
    P(o), P(b), which one is the argmax (``o_wins``, ``b_wins``), and the split of logit(o) - logit(b) into the
    embedding path, each attention and each FF (summary only). Logged as
    ``hijack/<placement>/T<L>/<variant>/n<k>/<metric>`` (the variant is ``full`` for rho 1, else ``<ff>@rho<rho>``;
    ``ff_variants`` in the summary says which rank each is). summary.json holds under ``results`` the table and, per
    setting, the boundary: the smallest n at which o wins on at least half of the prompts (null if it never does);
    under ``theory_fit``, per placement and FF variant, the fit of ``lightning_modules/hijack_theory.py`` over n and T
    (coefficients, R^2) with the predicted and measured boundary and logit gaps per length.

    Lengths are multiples of the training length (``length_factors``); ``beyond`` puts the pairs past it. Under
    ``prev_token``: layer 1's previous-token attention inside and beyond the training length, on clean sequences of
    each probed length: the mechanism the positional encoding decides (``prev_token_attention``), read from layer
    ``prev_token_layer`` (default the first; a deeper model without positions may put the head elsewhere).

    ``constructed``: also answer the same prompts with the associative-memory transformer built from the theory
    (``lightning_modules/memory.py``, ``construct``: this run's embeddings, positions and data, no training), recorded
    as the variant ``constructed`` beside the trained model's, with its own boundary and theory fit. ``scales``: the
    construction's free scales (``ConstructionScales``; README, "The constructed model").
    """

    record_name = HIJACK_PROBE  # its section of summary.json callbacks

    def __init__(self, n_pairs: list[int] | None = None, length_factors: list[int] | None = None,
                 placements: list[str] | None = None, ff_target: str = "layers.1.ff.w2", ff_rhos: list[float] | None = None,
                 n_prompts: int = 128, seed: int = 0, n_global: list[int] | None = None, prev_token_layer: int = 0,
                 constructed: bool = False,
                 scales: dict[str, float] | None = None):
        # in increasing order, whatever the config's order: the boundary is the smallest n that wins
        self.n_pairs = sorted(set(n_pairs if n_pairs is not None else range(0, 9)))
        self.length_factors = sorted(set(length_factors or [1, 4]))
        self.placements = list(dict.fromkeys(placements or ["late", "beyond"]))
        bad = [p for p in self.placements if p not in hijack_prompts.PLACEMENTS]
        if bad or not self.n_pairs or any(n < 0 for n in self.n_pairs) or any(f < 1 for f in self.length_factors):
            raise ValueError(f"HijackProbe: placements in {hijack_prompts.PLACEMENTS}, n_pairs >= 0, length_factors >= 1; "
                             f"got {self.placements}, {self.n_pairs}, {self.length_factors}")
        self.ff_rhos = list(dict.fromkeys(ff_rhos if ff_rhos is not None else [1.0, 0.1, 0.0]))
        if not self.ff_rhos or any(not 0.0 <= r <= 1.0 for r in self.ff_rhos):
            raise ValueError(f"HijackProbe.ff_rhos must be rank fractions in [0, 1], got {ff_rhos}")
        if n_prompts < 1:
            raise ValueError(f"HijackProbe.n_prompts must be >= 1, got {n_prompts}")
        self.ff_target = ff_target
        self._ff_shapes: dict[str, tuple[int, int]] | None = None  # the matrices ff_target names (check_config)
        self.n_prompts, self.seed = n_prompts, seed
        if any(k < 0 for k in n_global or []):
            raise ValueError(f"HijackProbe.n_global (pairs (q, b) in the context) must be >= 0, got {n_global}")
        self.n_global = sorted({0, *(n_global or [])})  # k = 0: the prompts of by_n
        self.prev_token_layer, self.constructed = prev_token_layer, constructed
        try:
            self.scales = memory.ConstructionScales(**(scales or {}))
        except TypeError as err:
            raise ValueError(f"HijackProbe.scales: {err} (fields: position, induction, output, global_)") from None
        self._t_train: int | None = None
        self.constructed_skipped: str | None = None
        self.constructed_test_sets: dict[str, dict[str, float]] = {}
        self.results: dict[str, Any] = {}
        self.fits: dict[str, Any] = {}
        self.prev_token: dict[str, Any] = {}
        self.ff_variants: dict[str, Any] = {}

    def check_config(self, model: torch.nn.Module, datamodule: Any) -> None:
        require_generator(self, datamodule)
        n_layers = len(network(model).layers)
        if not -n_layers <= self.prev_token_layer < n_layers:
            raise ValueError(f"HijackProbe.prev_token_layer {self.prev_token_layer} is not a layer of this {n_layers}-layer model")
        self.prev_token_layer %= n_layers  # recorded as the layer's index
        groups = target_groups(network(model), [self.ff_target])  # a typo fails before training
        if len(groups) != 1:
            raise ValueError(f"HijackProbe.ff_target {self.ff_target!r} must name one matrix (the global bigram's FF) "
                             f"or one group (a+b), it matches {[g for g, _ in groups]}")
        self.ff_target, self._ff_matrices = groups[0]  # a glob that matches one matrix: its name
        self._ff_shapes = target_shapes(network(model), self._ff_matrices)
        t = datamodule.gen.seq_len
        longest = t * max(self.length_factors)
        max_len = network(model).cfg.max_len
        if max_len is not None and longest > max_len:
            raise ValueError(f"HijackProbe: prompts of {longest} tokens exceed model.max_seq_len ({max_len})")
        # every probed setting builds some prompt: a setting none of n_pairs fits would leave a hole in every figure
        for placement in self.placements:
            settings = [(f, len(hijack_prompts.pair_slots(t * f, placement, t))) for f in self.length_factors
                        if not (placement == "beyond" and t * f <= t + 2)]
            if not settings:
                raise ValueError(f"HijackProbe.placements: 'beyond' needs a length factor > 1 (length_factors "
                                 f"{self.length_factors}: no prompt is longer than the training length {t})")
            for factor, room in settings:
                if min(self.n_pairs) > room:
                    raise ValueError(f"HijackProbe.n_pairs {self.n_pairs}: at most {room} pairs fit a {t * factor}-token "
                                     f"prompt ({placement}, length factor {factor}); include some n <= {room}")

    @torch.no_grad()
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        net, dm = network(pl_module), trainer.datamodule
        if self._ff_shapes is None:
            self.check_config(pl_module, dm)
        t_train = self._t_train = dm.gen.seq_len
        was_training = net.training
        net.eval()
        scalars: dict[str, float] = {}
        built = None
        if self.constructed:
            # a sweep over encodings shares one config: where the theory has no construction (RoPE, ALiBi, NoPE,
            # several heads) the record says why instead of failing the run
            try:
                built = memory.construct(net, dm.gen.global_next_token(), t_train, scales=self.scales)
                self.ff_variants[CONSTRUCTED] = {"constructed": True, "scales": asdict(self.scales)}
                self.constructed_test_sets = self._test_sets(built, dm, pl_module.hparams.noise_id)
            except ValueError as err:
                self.constructed_skipped = str(err)
                print(f"HijackProbe: no constructed model for this run: {err}")
        for placement in self.placements:
            for factor in self.length_factors:
                length = t_train * factor
                if placement == "beyond" and length <= t_train + 2:
                    continue  # no room beyond the training length
                # the same prompts for every variant: {k: {n: prompts}}, k global pairs (q, b) beside n pairs (q, o)
                prompt_sets = {k: self._prompts(dm.bigram, length, placement, t_train, pl_module.device, k) for k in self.n_global}
                models = []  # (variant, model, ranks): the trained model at each FF rank, then the constructed one
                for rho in self.ff_rhos:
                    ranks = {n: rank_for(shape, rho) for n, shape in self._ff_shapes.items()}
                    # rho 1 keeps the full rank: the full model, named so (run_record/names.py)
                    full = all(k == min(self._ff_shapes[n]) for n, k in ranks.items())
                    variant = FULL if full else laser_variant(self.ff_target, rho)
                    self.ff_variants[variant] = {"rho": rho, "ranks": ranks}
                    models.append((variant, net, ranks))
                if built is not None:
                    models.append((CONSTRUCTED, built, {}))
                for variant, model, ranks in models:
                    # the (n, k) grid for the full and the constructed model; the FF's rank variants at k = 0 (cost)
                    grid = prompt_sets if variant in (FULL, CONSTRUCTED) else {0: prompt_sets[0]}
                    with truncated(model, ranks):
                        by_k = {k: self._measure(model, sets, split=k == 0) for k, sets in grid.items()}
                    for k, rows in by_k.items():
                        for n, r in rows.items():
                            scalars |= {hijack_key(placement, length, variant, n, m, k): v for m, v in r.items() if m != "logit_split"}
                    entry = {"boundary": hijack_theory.measured_boundary({n: r["o_wins"] for n, r in by_k[0].items()}),
                             "by_n": by_k[0], "length": length}
                    if len(by_k) > 1:
                        entry["by_k"] = {k: {"boundary": hijack_theory.measured_boundary({n: r["o_wins"] for n, r in rows.items()}),
                                             "by_n": rows} for k, rows in by_k.items() if k}
                    self.results.setdefault(placement, {}).setdefault(f"T{length}", {})[variant] = entry
        self.fits = self._fit_theory()
        # the mechanism behind length generalisation, measured directly: the previous-token head past T_train
        gen = dm.clean_generator()
        for factor in self.length_factors:
            length = t_train * factor
            batch = replace(gen, seq_len=length).sample(min(self.n_prompts, 64), torch.Generator().manual_seed(self.seed))
            self.prev_token[f"T{length}"] = prev_token_attention(net, batch["tokens"][:, :-1].to(pl_module.device), t_train,
                                                                 layer=self.prev_token_layer)
            scalars |= {prev_token_key(f"T{length}", k): v for k, v in self.prev_token[f"T{length}"].items()
                        if k in ("inside", "beyond") and v is not None}
        net.train(was_training)
        log_scalars(trainer, scalars | {f"hijack_fit/{p}/{v}/{k}": f[k] for p, by_v in self.fits.items()
                                        for v, f in by_v.items() for k in ("r2", "w_ic", "w_g", "beta") if f[k] is not None})
        print("\nHijack: fraction of prompts where the in-context answer o wins, by n in-context pairs:")
        print(self.format())
        print("\nHijack theory (lightning_modules/hijack_theory.py): logit(o) - logit(b) = w_ic * a(n, T) - w_g, "
              "fitted over n and T per setting:")
        print(self.format_fit())

    @staticmethod
    def _test_sets(model: torch.nn.Module, dm: Any, noise_id: int) -> dict[str, dict[str, float]]:
        """The model's metrics on the run's own clean test sets (the main one, then each length and placement), as the
        module evaluates the trained model (lightning_modules/metrics.py)."""
        loaders = dm.val_dataloader()
        loaders = loaders if isinstance(loaders, list) else [loaders]
        return {name or "main": evaluate_recall(model, loader, noise_id, dm.global_answer)
                for name, loader in zip([None, *dm.eval_set_names], loaders)}

    @staticmethod
    def _measure(model: torch.nn.Module, prompt_sets: dict[int, hijack_prompts.HijackPrompts], split: bool) -> dict[int, dict]:
        """{n: metrics} on each prompt set; with ``split``, where logit(o) - logit(b) comes from (embedding path, each
        attention, each FF), from the same pass."""
        rows = {}
        for n, prompts in prompt_sets.items():
            traced = traced_forward(model, prompts.tokens)
            rows[n] = hijack_prompts.measure(model, prompts, traced)
            if split:
                parts = logit_split(model, prompts.tokens, prompts.o, prompts.b, traced=traced)
                rows[n]["logit_split"] = {k: float(v.mean()) for k, v in parts.items()}
        return rows

    def _prompts(self, bigram, length: int, placement: str, t_train: int, device, k: int = 0) -> dict[int, hijack_prompts.HijackPrompts]:
        """{n: prompts} on ``device`` for each n of ``n_pairs`` that fits at this length and placement beside k pairs (q, b)."""
        sets = {}
        for n in self.n_pairs:
            try:
                prompts = hijack_prompts.build(bigram, n, length, placement, n_global=k, t_train=t_train,
                                               n_prompts=self.n_prompts, seed=self.seed)
            except ValueError:
                continue  # n pairs do not fit at this length and placement
            prompts.tokens, prompts.o, prompts.b = (x.to(device) for x in (prompts.tokens, prompts.o, prompts.b))
            sets[n] = prompts
        return sets

    def _fit_theory(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per placement and FF variant: the fitted form, and per length the predicted vs measured boundary and gaps."""
        fits: dict[str, dict[str, dict[str, Any]]] = {}
        for placement, by_len in self.results.items():
            for variant in dict.fromkeys(v for by_v in by_len.values() for v in by_v):
                points = [hijack_theory.Point(n, by_v[variant]["length"], r["logit_gap"], r["attn_after_o"] - r["attn_after_b"], k)
                          for by_v in by_len.values() if variant in by_v
                          for k, rows in [(0, by_v[variant]["by_n"])] + [(int(k), e["by_n"]) for k, e in (by_v[variant].get("by_k") or {}).items()]
                          for n, r in rows.items()]
                f = hijack_theory.fit(points)
                if f is None:
                    continue
                lengths = {}
                for t in dict.fromkeys(p.length for p in points):
                    mine = [p for p in points if p.length == t and p.k == 0]
                    n_star = f.boundary(t)
                    lengths[f"T{t}"] = {
                        "predicted_boundary": None if n_star is None else math.ceil(n_star - 1e-9),
                        "measured_boundary": hijack_theory.measured_boundary(
                            {n: r["o_wins"] for n, r in by_len[f"T{t}"][variant]["by_n"].items()}),
                        "gap_boundary": hijack_theory.gap_boundary({p.n: p.gap for p in mine}),
                        "length": t, "n": [p.n for p in mine], "measured_gap": [p.gap for p in mine],
                        "predicted_gap": [f.predict(p.n, t) for p in mine]}
                    by_k = by_len[f"T{t}"][variant].get("by_k") or {}
                    if by_k:  # with k global pairs: the form's n*(T, k) against the measured boundary
                        lengths[f"T{t}"]["by_k"] = {str(k): {
                            "predicted_boundary": None if (b := f.boundary(t, int(k))) is None else math.ceil(b - 1e-9),
                            "measured_boundary": e["boundary"],
                            "n": [n for n in e["by_n"]], "measured_gap": [r["logit_gap"] for r in e["by_n"].values()],
                            "predicted_gap": [f.predict(n, t, int(k)) for n in e["by_n"]]} for k, e in by_k.items()}
                fits.setdefault(placement, {})[variant] = f.as_dict() | {"by_length": lengths}
        return fits

    def format(self) -> str:
        lines = [f"{'setting':<44}" + "".join(f"{'n=' + str(n):>7}" for n in self.n_pairs) + "  boundary"]
        for placement, by_len in self.results.items():
            for length, by_variant in by_len.items():
                for variant, r in by_variant.items():
                    cells = "".join(f"{r['by_n'][n]['o_wins']:>7.2f}" if n in r["by_n"] else f"{'-':>7}" for n in self.n_pairs)
                    lines.append(f"{placement + ' ' + length + ' ' + variant:<44}{cells}  {r['boundary']}")
        return "\n".join(lines)

    def format_fit(self) -> str:
        fmt = lambda x, spec=".2f": "-" if x is None else format(x, spec)  # noqa: E731
        lines = [f"{'setting':<34}{'w_ic':>7}{'w_g':>7}{'beta':>6}{'R2':>6}{'R2 attn':>8}  boundary n (predicted n* / mean gap > 0 / o wins on half)"]
        for placement, by_v in self.fits.items():
            for variant, f in by_v.items():
                bounds = ", ".join(f"{t}: {fmt(b['predicted_boundary'], 'd')} / {fmt(b['gap_boundary'], 'd')} / "
                                   f"{fmt(b['measured_boundary'], 'd')}" for t, b in f["by_length"].items())
                lines.append(f"{placement + ' ' + variant:<34}{f['w_ic']:>7.2f}{f['w_g']:>7.2f}{f['beta']:>6.1f}"
                             f"{fmt(f['r2']):>6}{fmt(f['r2_attention']):>8}  {bounds}")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        def entry(r: dict) -> dict:
            out = {"boundary": r["boundary"], "length": r["length"], "by_n": {str(n): m for n, m in r["by_n"].items()}}
            if r.get("by_k"):
                out["by_k"] = {str(k): {"boundary": e["boundary"], "by_n": {str(n): m for n, m in e["by_n"].items()}}
                               for k, e in r["by_k"].items()}
            return out

        results = {p: {t: {v: entry(r) for v, r in by_t.items()} for t, by_t in by_p.items()} for p, by_p in self.results.items()}
        return {"results": results, "theory_fit": self.fits, "n_prompts": self.n_prompts, "prev_token": self.prev_token, "t_train": self._t_train,
                "ff_variants": self.ff_variants, "prev_token_layer": self.prev_token_layer,
                "constructed_skipped": self.constructed_skipped, "constructed_test_sets": self.constructed_test_sets}

    def record_kinds(self) -> list[str]:
        return [KNOWLEDGE_HIJACK]
