"""Graph utilities: complete / radius graphs, padding, validation (zoo.geometric.graph)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.geometric.graph import (Graph, batch_complete, fully_connected_edges, graph_sum, pad_graphs, radius_graph,
                                 segment_sum, validate_graph)  # fmt: skip


def test_fully_connected_edges():
    s, r = fully_connected_edges(3)
    assert len(s) == 9 and set(zip(s.tolist(), r.tolist())) == {(j, i) for i in range(3) for j in range(3)}
    s, r = fully_connected_edges(3, self_loops=False)
    assert len(s) == 6 and not np.any(s == r)
    with pytest.raises(ValueError, match="n: expected a non-negative int"):
        fully_connected_edges(-1)


def test_batch_complete_offsets_and_masks():
    pos = jnp.arange(2 * 3 * 3, dtype=jnp.float32).reshape(2, 3, 3)
    g = batch_complete(pos, jnp.ones((2, 3, 1)), jnp.ones((2, 3, 1, 3)))
    assert g.pos.shape == (6, 3) and g.n_graphs == 2 and g.senders.shape == (18,)
    # every edge stays inside its graph
    ng = np.asarray(g.node_graph)
    assert np.all(ng[np.asarray(g.senders)] == ng[np.asarray(g.receivers)])
    validate_graph(g, dim=3, in_scalar=1, in_vector=1)
    assert np.allclose(graph_sum(jnp.ones((6, 1)), g), [[3.0], [3.0]])


def test_batch_complete_under_jit():
    f = jax.jit(lambda p: graph_sum(p, batch_complete(p[None])))
    assert f(jnp.ones((4, 3))).shape == (1, 3)


def test_radius_graph():
    pos = jnp.array([[0.0, 0, 0], [0.5, 0, 0], [3.0, 0, 0], [3.2, 0, 0]])
    s, r, m = radius_graph(pos, 1.0, 12, node_graph=jnp.array([0, 0, 0, 1]))
    edges = {(int(a), int(b)) for a, b, k in zip(s, r, m) if k}
    # 3 and 2 are close but in different graphs; self-loops included
    assert edges == {(0, 0), (1, 1), (2, 2), (3, 3), (0, 1), (1, 0)}
    assert int(m.sum()) == 6 and not bool(m[6:].any())
    with pytest.raises(ValueError, match="max_edges"):
        radius_graph(pos, 10.0, 4)
    s2, r2, m2 = jax.jit(lambda p: radius_graph(p, 1.0, 12))(pos)
    assert int(m2.sum()) == 8  # 2 and 3 connect when in the same graph


def test_pad_graphs_and_masked_sums():
    g1 = {"pos": np.zeros((2, 3)), "senders": [0, 1], "receivers": [1, 0], "scalars": np.ones((2, 1))}
    g2 = {"pos": np.ones((3, 3)), "senders": [0], "receivers": [2], "scalars": 2 * np.ones((3, 1))}
    g = pad_graphs([g1, g2], n_pad=8, e_pad=5, g_pad=3)
    assert g.pos.shape == (8, 3) and g.n_graphs == 3
    assert np.asarray(g.node_mask).sum() == 5 and np.asarray(g.edge_mask).sum() == 3
    assert np.asarray(g.senders)[2] == 2 and np.asarray(g.receivers)[2] == 4
    assert np.allclose(graph_sum(g.scalars, g), [[2.0], [6.0], [0.0]])
    out = segment_sum(jnp.ones((5, 1)), g.receivers, 8, g.edge_mask)
    assert float(out.sum()) == 3.0
    with pytest.raises(ValueError, match="n_pad"):
        pad_graphs([g1, g2], n_pad=4, e_pad=5)
    with pytest.raises(ValueError, match="index out of range"):
        pad_graphs([{"pos": np.zeros((2, 3)), "senders": [0], "receivers": [2]}], n_pad=4, e_pad=4)


def _graph(n=3, e=4):
    return Graph(pos=jnp.zeros((n, 3)), scalars=jnp.zeros((n, 1)), vectors=jnp.zeros((n, 0, 3)),
                 senders=jnp.zeros(e, jnp.int32), receivers=jnp.zeros(e, jnp.int32), node_graph=jnp.zeros(n, jnp.int32),
                 node_mask=jnp.ones(n, bool), edge_mask=jnp.ones(e, bool), graph_mask=jnp.ones(1, bool))  # fmt: skip


def test_validate_graph_errors():
    g = _graph()
    validate_graph(g, dim=3, in_scalar=1, in_vector=0)
    with pytest.raises(ValueError, match="pos: expected last dimension dim=2"):
        validate_graph(g, dim=2)
    with pytest.raises(ValueError, match="pos: contains 1 non-finite"):
        validate_graph(g._replace(pos=g.pos.at[1, 2].set(jnp.nan)))
    with pytest.raises(ValueError, match="receivers: expected shape"):
        validate_graph(g._replace(receivers=jnp.zeros(3, jnp.int32)))
    with pytest.raises(ValueError, match=r"senders: expected indices in \[0, 3\)"):
        validate_graph(g._replace(senders=jnp.array([0, 1, 2, 3], jnp.int32)))
    with pytest.raises(ValueError, match="scalars: expected shape"):
        validate_graph(g._replace(scalars=jnp.zeros((2, 1))))
    with pytest.raises(ValueError, match="vectors: expected shape"):
        validate_graph(g, in_vector=1)
    empty = _graph(n=0, e=2)
    with pytest.raises(ValueError, match="empty graph"):
        validate_graph(empty)
