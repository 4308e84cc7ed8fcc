"""The hijack theory fit recovers a known form, its boundary solves the crossing, and bad data gets a low R^2."""
import math

import numpy as np
import pytest

from lightning_modules.hijack_theory import Point, attention_mass, fit, gap_boundary, measured_boundary


def synthetic(w_ic, w_g, beta, lengths=(64, 256), ns=(0, 1, 2, 4, 8), noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [Point(n, t, float(w_ic * attention_mass(np.array([n]), np.array([t]), beta)[0] - w_g + noise * rng.normal()),
                  float(attention_mass(np.array([n]), np.array([t]), beta)[0]))
            for t in lengths for n in ns]


def test_the_fit_recovers_the_coefficients_of_noise_free_data():
    f = fit(synthetic(10.0, 3.0, 4.0))
    assert f.r2 == pytest.approx(1.0, abs=1e-6) and f.r2_attention == pytest.approx(1.0, abs=1e-6)
    assert (f.w_ic, f.w_g, f.beta) == (pytest.approx(10.0, rel=1e-3), pytest.approx(3.0, rel=1e-3), pytest.approx(4.0, abs=0.05))


def test_the_boundary_is_where_the_predicted_gap_crosses_zero():
    f = fit(synthetic(10.0, 3.0, 4.0))
    for t in (64, 256):
        n_star = f.boundary(t)
        assert f.predict(n_star, t) == pytest.approx(0.0, abs=1e-6)
        assert f.predict(n_star * 1.1, t) > 0 > f.predict(n_star * 0.9, t)
    assert f.boundary(256) > f.boundary(64)  # longer prompts dilute the attention: more pairs are needed


def test_a_global_term_larger_than_the_in_context_one_never_crosses():
    f = fit(synthetic(2.0, 3.0, 4.0))
    assert f.boundary(64) is None


def test_gaps_unrelated_to_n_and_t_fit_badly():
    rng = np.random.default_rng(1)
    points = [Point(n, t, float(rng.normal()), 0.1) for t in (64, 256) for n in (0, 1, 2, 4, 8)]
    assert fit(points).r2 < 0.5


def test_too_few_points_give_no_fit_and_the_measured_boundary_is_the_smallest_n_where_o_wins_half():
    assert fit(synthetic(10.0, 3.0, 4.0, lengths=(64,), ns=(0, 1, 2))) is None
    assert measured_boundary({0: 0.02, 1: 0.3, 2: 0.5, 4: 0.9}) == 2
    assert measured_boundary({8: 0.9, 4: 0.6, 2: 0.1, 0: 0.0}) == 4  # the order n was probed in does not matter
    assert measured_boundary({0: 0.0, 8: 0.49}) is None
    assert gap_boundary({0: -3.0, 1: -0.5, 2: 0.4, 4: 2.0}) == 2 and gap_boundary({0: -3.0, 8: -0.1}) is None
    assert math.isclose(attention_mass(np.array([0.0]), np.array([64.0]), 3.0)[0], 0.0)


def test_with_k_global_pairs_the_fit_recovers_the_form_and_the_boundary_moves_up_by_what_the_k_pairs_outweigh():
    def gap(n, t, k, w_ic=10.0, w_g=3.0, beta=4.0):  # brute force, from the softmax over the T keys written out
        e = math.exp(beta)
        keys = [e] * n + [e] * k + [1.0] * (t - n - k)  # the n (q, o) keys, the k (q, b) keys, the rest
        total = sum(keys)
        return w_ic * (sum(keys[:n]) - sum(keys[n:n + k])) / total - w_g

    points = [Point(n, t, gap(n, t, k), 0.0, k) for t in (64, 256) for k in (0, 1, 2) for n in (0, 1, 2, 4, 8)]
    f = fit(points)
    assert f.r2 == pytest.approx(1.0, abs=1e-6)
    assert (f.w_ic, f.w_g, f.beta) == (pytest.approx(10.0, rel=1e-3), pytest.approx(3.0, rel=1e-3), pytest.approx(4.0, abs=0.05))
    for t in (64, 256):
        for k in (0, 1, 2):
            n_star = f.boundary(t, k)
            assert f.predict(n_star, t, k) == pytest.approx(0.0, abs=1e-6)
            assert gap(math.ceil(n_star), t, k) > 0 > gap(math.floor(n_star), t, k)  # the measured crossing, as integers
        assert f.boundary(t, 2) > f.boundary(t, 1) > f.boundary(t, 0)


def test_a_beta_on_the_grids_edge_is_flagged_in_the_fit_table():
    from lightning_modules.hijack_theory import BETAS, on_grid_edge
    from reports.kinds.knowledge_hijack import fit_row

    assert on_grid_edge(float(BETAS[0])) and on_grid_edge(float(BETAS[-1])) and not on_grid_edge(2.0)
    f = {"w_ic": 1.0, "w_g": 0.5, "r2": 0.9, "r2_attention": None, "by_length": {}}
    assert fit_row("x", f | {"beta": float(BETAS[0])})["beta"] == "-4 (grid edge: only w_ic e^beta is determined)"
    assert fit_row("x", f | {"beta": 2.0})["beta"] == "2"
