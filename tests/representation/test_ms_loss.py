"""Tests for zoo.representation.ms_loss against independent numpy loops and the GPW properties the
paper derives (spec papers/ms_loss.md §6). Tiny shapes; jitted functions shared at module level."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.representation import ms_loss as M

# ----------------------------------------------------------------------------- numpy references


def np_ms(E, y, alpha=2.0, beta=40.0, lam=0.5, eps=0.1, mining=True):
    """Literal per-anchor loop, official semantics (index-based self-exclusion, divisor B)."""
    S = E @ E.T
    B = len(y)
    total = 0.0
    for i in range(B):
        pos = np.array([S[i, j] for j in range(B) if j != i and y[j] == y[i]])
        neg = np.array([S[i, k] for k in range(B) if y[k] != y[i]])
        if mining:
            if len(pos) == 0 or len(neg) == 0:
                continue
            neg, pos = neg[neg + eps > pos.min()], pos[pos - eps < neg.max()]
        if len(pos) == 0 or len(neg) == 0:
            continue
        total += np.log(1 + np.sum(np.exp(-alpha * (pos - lam)))) / alpha
        total += np.log(1 + np.sum(np.exp(beta * (neg - lam)))) / beta
    return total / B


def np_contrastive(E, y, lam=0.5):
    S, B = E @ E.T, len(y)
    out = 0.0
    for i in range(B):
        for j in range(B):
            if j != i and y[j] == y[i]:
                out += 1 - S[i, j]
            elif y[j] != y[i]:
                out += max(S[i, j] - lam, 0.0)
    return out / B


def np_triplet(E, y, margin=0.1, mining="all", reduction="mean_all"):
    S, B = E @ E.T, len(y)
    vals = []
    for a in range(B):
        P = [p for p in range(B) if p != a and y[p] == y[a]]
        N = [n for n in range(B) if y[n] != y[a]]
        if mining == "hard":
            if P and N:
                vals.append(max(max(S[a, N]) - min(S[a, P]) + margin, 0.0))
            continue
        for p in P:
            for n in N:
                if mining == "semihard" and not (S[a, p] - margin < S[a, n] < S[a, p]):
                    continue
                vals.append(max(S[a, n] - S[a, p] + margin, 0.0))
    if reduction == "mean_active":
        vals = [v for v in vals if v > 0]
    return float(np.mean(vals)) if vals else 0.0


def np_binomial(E, y, alpha=2.0, beta=50.0, lam=0.5):
    S, B = E @ E.T, len(y)
    lp = [np.log1p(np.exp(-alpha * (S[i, j] - lam))) for i in range(B) for j in range(B) if i != j and y[i] == y[j]]
    ln = [np.log1p(np.exp(beta * (S[i, j] - lam))) for i in range(B) for j in range(B) if y[i] != y[j]]
    return np.mean(lp) + np.mean(ln)


def np_lifted(E, y, lam=0.5, form="generalized"):
    S, B = E @ E.T, len(y)
    if form == "generalized":
        out = 0.0
        for i in range(B):
            P = [j for j in range(B) if j != i and y[j] == y[i]]
            N = [k for k in range(B) if y[k] != y[i]]
            if P and N:
                out += max(np.log(np.sum(np.exp(S[i, N]))) + np.log(np.sum(np.exp(lam - S[i, P]))), 0.0)
        return out / B
    D = np.sqrt(np.maximum(2 - 2 * S, 1e-12))
    terms = []
    for i in range(B):
        for j in range(B):
            if i != j and y[i] == y[j]:
                Ni = [k for k in range(B) if y[k] != y[i]]
                J = np.log(np.sum(np.exp(1 - D[i, Ni])) + np.sum(np.exp(1 - D[j, Ni]))) + D[i, j]
                terms.append(max(J, 0.0) ** 2)
    return np.sum(terms) / (2 * len(terms))


def np_recall(E, y, ks, ties="optimistic"):
    S = E @ E.T
    out = {}
    for k in ks:
        hits = 0
        for i in range(len(y)):
            order = [j for j in range(len(y)) if j != i]
            sims = S[i, order]
            same = y[order] == y[i]
            if not same.any():
                continue
            best = sims[same].max()
            before = (sims > best) if ties == "optimistic" else (sims >= best)
            hits += int(np.sum(before & ~same) < k)
        out[k] = hits / len(y)
    return out


def batch(B=12, D=4, C=3, seed=0, singleton=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, B)
    if singleton:
        y[-1] = C  # a class with one member: an anchor without positives
    z = rng.normal(size=(B, D)) + 1.5 * np.eye(C + 1, D)[y]
    E = z / np.linalg.norm(z, axis=1, keepdims=True)
    return E.astype(np.float32), y.astype(np.int32)


E0, Y0 = batch()
ms_jit = jax.jit(M.ms_loss, static_argnames=("mining",))
grad_jit = jax.jit(jax.grad(M.ms_loss), static_argnames=("mining",))
weights_jit = jax.jit(M.ms_pair_weights, static_argnames=("mining",))


# ----------------------------------------------------------------------------- MS loss


@pytest.mark.parametrize("preset", ["code", "paper", "pml"])
@pytest.mark.parametrize("mining", [True, False])
def test_ms_matches_numpy_loop(preset, mining):
    hp = M.PRESETS[preset]
    for seed in (0, 1):
        E, y = batch(seed=seed)
        got = ms_jit(E, y, mining=mining, **hp)
        want = np_ms(E.astype(np.float64), y, mining=mining, **hp)
        np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)


def test_mining_masks_follow_definition():
    S = jnp.asarray(E0 @ E0.T)
    pos, neg = M.pair_masks(Y0)
    pm, nm, valid = M.ms_mine(S, pos, neg, 0.1)
    s = np.asarray(S)
    for i in range(len(Y0)):
        P, N = np.asarray(pos[i]), np.asarray(neg[i])
        if P.any():
            np.testing.assert_array_equal(np.asarray(nm[i]), N & (s[i] + 0.1 > s[i][P].min()))
        np.testing.assert_array_equal(np.asarray(pm[i]), P & (s[i] - 0.1 < s[i][N].max()))
    assert not bool(valid[-1])  # the singleton anchor


@jax.jit
def _gpw_views(E, y):
    """For mining on/off: autodiff grad, (G + G^T) E from the closed-form weights, autodiff G, surrogate grad."""
    out = {}
    for mining in (True, False):
        S = E @ E.T
        wp, wn = M.ms_pair_weights(S, y, mining=mining)
        G = (wn - wp) / y.shape[0]
        out[mining] = (jax.grad(M.ms_loss)(E, y, mining=mining), (G + G.T) @ E,
                       M.gpw_weights(S, y, "ms", mining=mining), G,
                       jax.grad(lambda e: M.gpw_surrogate(e @ e.T, G))(E))
    return out


def test_grad_equals_gpw_weights_and_surrogate():
    for g, g_weights, G_auto, G, g_surrogate in _gpw_views(E0, Y0).values():
        assert float(jnp.abs(g).max()) > 1e-3  # a real gradient
        np.testing.assert_allclose(g, g_weights, atol=1e-6)
        np.testing.assert_allclose(G_auto, G, atol=1e-7)
        np.testing.assert_allclose(g_surrogate, g, atol=1e-6)


def test_reductions_and_limits():
    # mining=False is mining with an infinite margin
    a = ms_jit(E0, Y0, mining=False)
    b = ms_jit(E0, Y0, eps=1e6, mining=True)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    # well separated classes (hardest positive above hardest negative by > eps): loss and gradient are 0
    y = (np.arange(12) % 3).astype(np.int32)
    z = np.eye(4)[y] + 0.01 * np.random.default_rng(3).normal(size=(12, 4))
    E = (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)
    assert float(ms_jit(E, y)) == 0.0
    assert float(jnp.abs(grad_jit(E, y)).max()) == 0.0
    # beta -> inf: (1/beta) log(1 + e^{beta (S - lam)}) -> [S - lam]_+
    S = jnp.array([[1.0, 0.9, 0.85], [0.9, 1.0, 0.85], [0.85, 0.85, 1.0]])
    yy = np.array([0, 0, 1], np.int32)
    got = M.pair_loss_from_similarity(S, yy, "ms", beta=1e4)
    want = 2 * (np.log1p(np.exp(-2 * (0.9 - 0.5))) / 2 + 0.35) / 3
    assert float(got) == pytest.approx(want, abs=1e-4)


def test_invariances():
    base = float(ms_jit(E0, Y0))
    perm = np.random.default_rng(1).permutation(len(Y0))
    assert float(ms_jit(E0[perm], Y0[perm])) == pytest.approx(base, rel=1e-5)
    relabel = np.array([7, 3, 11, 0])[Y0]
    assert float(ms_jit(E0, relabel.astype(np.int32))) == pytest.approx(base, rel=1e-6)
    z = E0 * np.random.default_rng(2).uniform(0.5, 3.0, (len(Y0), 1)).astype(np.float32)
    assert float(M.ms_loss_from_logits(z, Y0)) == pytest.approx(base, rel=1e-5)
    Q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(4, 4)))
    assert float(ms_jit((E0 @ Q).astype(np.float32), Y0)) == pytest.approx(base, rel=1e-4)


def test_weight_properties_n_similarity():
    S = jnp.asarray(E0 @ E0.T)
    wp, wn = weights_jit(S, Y0, mining=False)
    for w in (wp, wn):
        assert float(w.min()) >= 0 and float(w.max()) < 1
        assert float(w.sum(1).max()) < 1 + 1e-6  # < 1 exactly in float64 (test_float64_ms_loss.py)
    # raising one negative's similarity raises its weight and lowers the other negatives' weights (N);
    # the anchor's positive weights do not move (weights are per-side softmaxes with the "1 +")
    i = 0
    k = int(np.flatnonzero(Y0 != Y0[i])[0])
    hp = dict(beta=5.0, mining=False)
    wp, wn = weights_jit(S, Y0, **hp)
    wp2, wn2 = weights_jit(S.at[i, k].add(0.05), Y0, **hp)
    others = (Y0 != Y0[i]) & (np.arange(len(Y0)) != k)
    assert float(wn2[i, k]) > float(wn[i, k])
    assert np.all(np.asarray(wn2[i])[others] < np.asarray(wn[i])[others])
    np.testing.assert_allclose(wp2[i], wp[i], atol=1e-7)


# ----------------------------------------------------------------------------- GPW baselines


@jax.jit
def _baselines(E, y):
    out = {"contrastive": M.contrastive_loss(E, y), "binomial": M.binomial_deviance_loss(E, y),
           "lifted": M.lifted_structure_loss(E, y), "song2016": M.lifted_structure_loss(E, y, form="song2016"),
           "binomial_mined_inf": M.binomial_deviance_loss(E, y, mining=True, eps=1e6)}
    for mining in ("all", "semihard", "hard"):
        for red in ("mean_all", "mean_active"):
            out[f"triplet_{mining}_{red}"] = M.triplet_loss(E, y, mining=mining, reduction=red)
    return out


def test_other_losses_match_numpy():
    E64 = E0.astype(np.float64)
    got = _baselines(E0, Y0)
    close = lambda a, b: np.testing.assert_allclose(float(a), b, rtol=1e-5, atol=1e-6)  # noqa: E731
    close(got["contrastive"], np_contrastive(E64, Y0))
    for mining in ("all", "semihard", "hard"):
        for red in ("mean_all", "mean_active"):
            close(got[f"triplet_{mining}_{red}"], np_triplet(E64, Y0, 0.1, mining, red))
    close(got["binomial"], np_binomial(E64, Y0))
    close(got["lifted"], np_lifted(E64, Y0))
    close(got["song2016"], np_lifted(E64, Y0, form="song2016"))
    # binomial + MS mining with an infinite margin is plain binomial when every anchor has a positive
    # (a singleton's threshold, a min over an empty set, is +inf, so its negatives are never mined)
    En, yn = batch(singleton=False)
    close(_baselines(En, yn)["binomial_mined_inf"], np_binomial(En.astype(np.float64), yn))
    # the eager (validated) entry points give the same numbers
    close(M.contrastive_loss(E0, Y0), np_contrastive(E64, Y0))


@jax.jit
def _weights(S, y):
    return {k: M.gpw_weights(S, y, k) for k in ("contrastive", "binomial", "lifted")}


def test_gpw_weights_of_baselines_are_the_papers():
    S = jnp.asarray(E0 @ E0.T)
    pos, neg = (np.asarray(m) for m in M.pair_masks(Y0))
    s, B = np.asarray(S), len(Y0)
    W = _weights(S, Y0)
    # contrastive: weight 1 on every positive, on negatives above lam; depends on S only
    np.testing.assert_allclose(W["contrastive"], (neg & (s > 0.5)) / B - pos / B, atol=1e-7)
    # binomial: sigmoid weights of the pair's own similarity
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    want = np.where(neg, 50 * sig(50 * (s - 0.5)) / neg.sum(), 0.0) - np.where(pos, 2 * sig(-2 * (s - 0.5)) / pos.sum(), 0.0)
    np.testing.assert_allclose(W["binomial"], want, rtol=1e-4, atol=1e-8)
    # generalised lifted: softmax over an anchor's negatives (N-similarity), not S or P
    G = np.asarray(W["lifted"])
    for i in range(B):
        if pos[i].any() and neg[i].any():
            e = np.where(neg[i], np.exp(s[i]), 0)
            np.testing.assert_allclose(G[i][neg[i]], (e / e.sum())[neg[i]] / B, rtol=1e-4)


# ----------------------------------------------------------------------------- Recall@K


recall_jit = jax.jit(M.recall_at_k, static_argnames=("ks", "ties", "chunk"))


def test_recall_at_k():
    # hand example on the circle: 0,1 class A; 2,3 class B; item 4 class A far away
    ang = np.array([0.0, 0.3, 0.1, 1.5, 3.0])
    E = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    y = np.array([0, 0, 1, 1, 0], np.int32)
    r = recall_jit(E, y, ks=(1, 2, 3))
    # query 0: nearest 2 (B) then 1 (A) -> hit at K >= 2; 1: nearest 2 (B), then 0 -> K >= 2;
    # 2: nearest 0 (A), 1 (A), 3 (B) -> K = 3; 3: nearest 1 (A), 2 (B) -> K >= 2; 4: 3 (B), 1, ... -> K >= 2
    assert [float(r[k]) for k in (1, 2, 3)] == pytest.approx([0.0, 0.8, 1.0])
    # perfect embedding -> 1; all-equal embeddings: every negative ties with the best positive
    yp = np.array([0, 0, 1, 1, 1], np.int32)
    assert float(recall_jit(np.eye(2, dtype=np.float32)[yp], yp, ks=(1, 2, 3))[1]) == 1.0
    Et = np.full((5, 2), np.sqrt(0.5), np.float32)
    assert float(recall_jit(Et, yp, ks=(1, 2, 3))[1]) == 1.0
    pess = recall_jit(Et, yp, ks=(1, 2, 3), ties="pessimistic")
    assert float(pess[1]) == 0.0 and float(pess[3]) == pytest.approx(0.6)  # class 1 queries: 2 tied negatives < 3
    # random embeddings vs the brute-force numpy loop, both tie rules, monotone in K, chunked queries
    E, y = batch(B=20, D=3, seed=5)
    for ties in ("optimistic", "pessimistic"):
        got = recall_jit(E, y, ks=(1, 2, 4, 8), ties=ties, chunk=7)
        want = np_recall(E.astype(np.float64), y, (1, 2, 4, 8), ties)
        assert [float(got[k]) for k in got] == pytest.approx([want[k] for k in want])
        assert all(float(got[a]) <= float(got[b]) for a, b in ((1, 2), (2, 4), (4, 8)))
    # separate gallery: the query itself is not excluded (each query finds itself)
    assert float(M.recall_at_k(E[:4], y[:4], E, y, ks=(1,))[1]) == 1.0
    with pytest.raises(ValueError, match="ks"):
        M.recall_at_k(E, y, ks=(20,))


# ----------------------------------------------------------------------------- transforms, batches, model


@jax.jit
def _all_grads(E, y):
    fs = (M.contrastive_loss, M.binomial_deviance_loss, M.lifted_structure_loss,
          lambda e, y: M.lifted_structure_loss(e, y, form="song2016"),
          lambda e, y: M.triplet_loss(e, y, mining="semihard"))
    return [jax.grad(f)(E, y) for f in fs]


def test_jit_vmap_grad():
    Es = np.stack([batch(seed=s)[0] for s in range(3)])
    v = jax.jit(jax.vmap(lambda e: M.ms_loss(e, Y0)))(Es)
    for s in range(3):
        assert float(v[s]) == pytest.approx(np_ms(Es[s].astype(np.float64), Y0), rel=1e-5)
    g = jax.jit(jax.vmap(jax.grad(lambda e: M.triplet_loss(e, Y0, mining="hard"))))(Es)
    assert g.shape == Es.shape and bool(jnp.all(jnp.isfinite(g)))
    # gradients of every loss are finite, also for the singleton anchor and song2016's sqrt
    for g in _all_grads(E0, Y0):
        assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0


def test_degenerate_batches():
    distinct = np.arange(12, dtype=np.int32)  # no positive pair: warn, loss 0
    with pytest.warns(UserWarning, match="no positive pair"):
        assert float(M.ms_loss(E0, distinct)) == 0.0
    with pytest.raises(ValueError, match="labels: all 12 labels are the same class"):
        M.ms_loss(E0, np.zeros(12, np.int32))
    assert float(ms_jit(E0, jnp.zeros(12, jnp.int32))) == 0.0  # under jit: no value check, loss 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.ms_loss(E0, Y0)  # a normal batch does not warn


def test_pk_batches():
    y = np.repeat(np.arange(6), [5, 5, 7, 2, 5, 9])
    table, counts = M.class_table(y)
    assert counts.tolist() == [5, 5, 7, 2, 5, 9]
    for c in range(6):
        assert sorted(table[c, : counts[c]].tolist()) == np.flatnonzero(y == c).tolist()
    f = jax.jit(jax.vmap(lambda k: M.pk_batch_indices(k, table, counts, n_classes=4, n_instances=5)))
    idx = np.asarray(f(jax.random.split(jax.random.key(0), 8)))
    for row in idx:
        groups = y[row].reshape(4, 5)
        assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 4
        for g, items in zip(groups[:, 0], row.reshape(4, 5)):
            if counts[g] >= 5:
                assert len(set(items.tolist())) == 5  # without replacement
    # the embedder (zoo.nn.MLP + l2_normalize) is exercised end to end by tests/experiments/test_ms_loss_experiment.py
