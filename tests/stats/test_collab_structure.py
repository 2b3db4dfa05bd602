"""zoo.stats.collab_structure against networkx (the reference) and its defining properties (spec §6)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.stats import collab_structure as cs

nx = pytest.importorskip("networkx")
N_MAX = 24


def _graph(G, n_max=N_MAX):
    W = np.zeros((n_max, n_max))
    for u, v in G.edges():
        W[u, v] = W[v, u] = 1.0
    return cs.CoauthorGraph(W=jnp.asarray(W, jnp.float32), node_mask=jnp.arange(n_max) < G.number_of_nodes(),
                            n_papers=jnp.asarray(10.0), n_multi_papers=jnp.asarray(7.0))


def _graphs():
    rng = np.random.default_rng(0)
    out = [nx.gnp_random_graph(18, 0.2, seed=1), nx.gnp_random_graph(20, 0.12, seed=2)]
    papers = [list(rng.choice(15, size=rng.integers(1, 4), replace=False)) for _ in range(25)]
    g = cs.from_papers(papers)
    Gp = nx.Graph()
    Gp.add_nodes_from(range(g.W.shape[0]))
    Gp.add_edges_from(np.argwhere(np.triu(np.asarray(g.W)) > 0).tolist())
    out.append(Gp)
    return out


GRAPHS = _graphs()
BATCH = jax.tree.map(lambda *x: jnp.stack(x), *[_graph(G) for G in GRAPHS])


@pytest.fixture(scope="module")
def measures():
    """Every jnp measure, vmapped over the padded graphs: ONE compile."""
    labels = jnp.stack([jnp.asarray(cs.detect_communities(_graph(G))) for G in GRAPHS])

    def f(g, lab, key):
        return {"cent": cs.degree_centralization(g), "assort": cs.degree_assortativity(g),
                "Q": cs.modularity(g, lab, False), "clust": cs.average_clustering(g), "con": cs.burt_constraint(g),
                "eff": cs.effective_size(g), "core": cs.core_numbers(g), "cc": cs.connected_components(g),
                "lcc": cs.largest_component_mask(g), "hops": cs.all_pairs_hops(g), "sw": cs.small_world_sigma(g),
                "rob": cs.robustness_ratio(key, g), "ratio": cs.coreness_ratio(g)}

    keys = jax.random.split(jax.random.key(0), len(GRAPHS))
    return jax.tree.map(np.asarray, jax.jit(jax.vmap(f))(BATCH, labels, keys)), np.asarray(labels)


def _ref_centralization(G):
    n = G.number_of_nodes()
    k = np.array([d for _, d in G.degree()])
    return (k.max() - k).sum() / ((n - 1) * (n - 2))


def test_measures_equal_networkx(measures):
    out, labels = measures
    for i, G in enumerate(GRAPHS):
        n = G.number_of_nodes()
        assert out["cent"][i] == pytest.approx(_ref_centralization(G), abs=1e-6)
        assert out["assort"][i] == pytest.approx(nx.degree_assortativity_coefficient(G), abs=1e-5)
        comms = [set(np.flatnonzero(labels[i][:n] == c).tolist()) for c in np.unique(labels[i][:n])]
        assert out["Q"][i] == pytest.approx(nx.community.modularity(G, comms), abs=1e-6)
        assert out["clust"][i] == pytest.approx(nx.average_clustering(G), abs=1e-6)
        con, eff = nx.constraint(G), nx.effective_size(G)
        for v in range(n):
            if G.degree(v) == 0:
                assert np.isnan(out["con"][i][v]) and np.isnan(con[v])
            else:
                assert out["con"][i][v] == pytest.approx(con[v], abs=1e-5)
                assert out["eff"][i][v] == pytest.approx(eff[v], abs=1e-5)
        assert np.isnan(out["con"][i][n:]).all()
        core = nx.core_number(G)
        np.testing.assert_array_equal(out["core"][i][:n], [core[v] for v in range(n)])
        comps = {frozenset(c) for c in nx.connected_components(G)}
        got = {frozenset(np.flatnonzero(out["cc"][i][:n] == lab).tolist()) for lab in np.unique(out["cc"][i][:n])}
        assert got == comps
        big = max(nx.connected_components(G), key=len)
        assert set(np.flatnonzero(out["lcc"][i]).tolist()) == big
        sp = dict(nx.all_pairs_shortest_path_length(G))
        for u in range(n):
            for v in range(n):
                assert out["hops"][i][u, v] == sp[u].get(v, np.inf)
        H = G.subgraph(big)
        nc, mc = H.number_of_nodes(), H.number_of_edges()
        kbar = 2 * mc / nc
        sigma = (nx.average_clustering(H) / (2 * mc / (nc * (nc - 1)))) / (
            nx.average_shortest_path_length(H) / (np.log(nc) / np.log(kbar)))
        assert out["sw"][i] == pytest.approx(sigma if n >= 10 and G.number_of_edges() >= 5 and kbar > 1 else 0,
                                             rel=1e-4)
        kmax = max(core.values())
        assert out["ratio"][i] == pytest.approx(sum(c == kmax for c in core.values()) / n, abs=1e-6)
        assert 0 <= out["rob"][i] <= 1.5


def test_hand_examples():
    # two triangles joined by the bridge 2-3
    G = nx.Graph([(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)])
    g = _graph(G, 6)
    assert float(cs.degree_centralization(g)) == pytest.approx(0.2, abs=1e-6)
    assert float(cs.degree_assortativity(g)) == pytest.approx(-1 / 6, abs=1e-6)
    assert float(cs.modularity(g, jnp.array([0, 0, 0, 1, 1, 1]))) == pytest.approx(0.357143, abs=1e-5)
    np.testing.assert_allclose(cs.burt_constraint(g), [145 / 144] * 2 + [0.611111] * 2 + [145 / 144] * 2, atol=1e-5)
    np.testing.assert_allclose(cs.effective_size(g), [1, 1, 7 / 3, 7 / 3, 1, 1], atol=1e-5)
    # single community: Q = 0
    assert float(cs.modularity(g, jnp.zeros(6, jnp.int32))) == pytest.approx(0, abs=1e-6)
    star = _graph(nx.star_graph(5), 6)
    assert float(cs.degree_centralization(star)) == pytest.approx(1, abs=1e-6)
    assert float(cs.degree_assortativity(star)) == pytest.approx(-1, abs=1e-6)
    np.testing.assert_allclose(cs.burt_constraint(star), [0.2, 1, 1, 1, 1, 1], atol=1e-6)
    # regular graph: assortativity undefined (NaN); fallbacks of tiny graphs
    assert np.isnan(float(cs.degree_assortativity(_graph(nx.cycle_graph(6), 6))))
    tiny = _graph(nx.path_graph(2), 4)
    assert float(cs.degree_centralization(tiny)) == 0 and float(cs.coreness_ratio(tiny)) == 0
    assert float(cs.small_world_sigma(tiny)) == 0 and float(cs.robustness_ratio(jax.random.key(0), tiny)) == 1


def test_padding_and_relabelling_do_not_change_measures(measures):
    out, _ = measures
    G = GRAPHS[0]
    perm = np.random.default_rng(1).permutation(G.number_of_nodes())
    H = nx.relabel_nodes(G, dict(enumerate(perm.tolist())))
    h = _graph(H, G.number_of_nodes())  # unpadded and relabelled
    assert float(cs.degree_centralization(h)) == pytest.approx(out["cent"][0], abs=1e-6)
    np.testing.assert_allclose(np.asarray(cs.burt_constraint(h))[perm], out["con"][0][:G.number_of_nodes()],
                               atol=1e-6)


def test_from_papers_and_rates():
    papers = [[0, 1, 2], [1, 2], [3], [2, 2, 4], [5]]
    g = cs.from_papers(papers, n_max=6)
    W = np.asarray(g.W)
    assert g.node_mask.tolist() == [True] * 4 + [False] * 2  # authors 0, 1, 2, 4
    assert W[1, 2] == 2 and W[0, 1] == 1 and W[2, 3] == 1 and np.trace(W) == 0  # 4 is node 3; dup removed
    assert float(cs.collaboration_rate(g)) == pytest.approx(3 / 5)
    assert float(cs.repeated_collaboration_rate(g)) == pytest.approx(1 / 4)
    cs.check_graph(g)


def test_statistics_match_numpy_references():
    rng = np.random.default_rng(0)
    X = np.c_[np.ones(40), rng.normal(size=(40, 2))]
    y = X @ [1.0, 2.0, -1.0] + rng.normal(size=40) * (1 + np.abs(X[:, 1]))
    beta, se, hc3 = (np.asarray(v) for v in cs.ols(jnp.asarray(y), jnp.asarray(X)))
    b_ref = np.linalg.lstsq(X, y, rcond=None)[0]
    e = y - X @ b_ref
    XtXi = np.linalg.inv(X.T @ X)
    h = np.einsum("ij,jk,ik->i", X, XtXi, X)
    hc3_ref = np.sqrt(np.diag(XtXi @ (X.T * (e / (1 - h)) ** 2) @ X @ XtXi))
    np.testing.assert_allclose(beta, b_ref, rtol=1e-4)
    np.testing.assert_allclose(se, np.sqrt(np.diag(XtXi) * (e @ e) / 37), rtol=1e-4)
    np.testing.assert_allclose(hc3, hc3_ref, rtol=1e-4)
    a, b = rng.normal(size=15), rng.normal(size=11) + 0.5
    ref = (sum((x > z) for x in a for z in b) - sum((x < z) for x in a for z in b)) / (15 * 11)
    assert float(cs.cliffs_delta(a, b)) == pytest.approx(ref, abs=1e-6)
    pooled = np.sqrt((14 * a.var() + 10 * b.var()) / 24)
    assert float(cs.cohens_d(a, b)) == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-5)
    est, lo, hi = cs.bootstrap_ci(jax.random.key(0), a, b, n_boot=2000)
    assert lo < est < hi and float(est) == pytest.approx(a.mean() - b.mean(), rel=1e-5)
    pop, niche = cs.popular_niche_split(jnp.arange(10.0), 0.2)
    assert np.flatnonzero(pop).tolist() == [8, 9] and np.flatnonzero(niche).tolist() == [0, 1]
    cmp = cs.group_comparison(a, b)
    assert cmp["test"] in ("t", "mann_whitney") and 0 <= cmp["p"] <= 1


def test_generator_link_and_regression():
    topics, meta = cs.synth_topics(0, 12, 3.0, p_range=(15, 60))
    assert len(topics) == 12 and all(m["n_nodes"] >= 5 for m in meta)
    P = np.array([m["P"] for m in meta])
    alpha = np.array([m["alpha"] for m in meta])
    assert np.all(np.diff(alpha[np.argsort(P)]) >= 0)  # β > 0: bigger topics are more modular
    assert all(m["alpha"] == 0.5 for m in cs.synth_topics(1, 3, 0.0, p_range=(15, 30))[1])  # the null
    r = cs.size_controlled_regression(P * 0.1 + np.arange(12) % 3, P, np.array([m["n_nodes"] for m in meta]))
    assert r["n"] == 12 and np.isfinite(r["t_pop"])
