"""Padded graphs for geometric models: one pytree, static shapes, so one ``jit`` trace serves every batch.

A batch of point clouds is a single disjoint-union graph padded to fixed sizes N (nodes) and E (edges):

    pos       f[N, dim]      positions x_i
    scalars   f[N, Cs]       invariant node features (Cs may be 0)
    vectors   f[N, Cv, dim]  vector node features, rotate with the positions (Cv may be 0)
    senders   i32[E]         j of the directed edge j -> i (messages flow sender -> receiver)
    receivers i32[E]         i of the edge
    node_graph i32[N]        which graph of the batch node i belongs to
    node_mask bool[N]        False on padding nodes
    edge_mask bool[E]        False on padding edges (they contribute nothing)
    graph_mask bool[G]       False on padding graphs; ``G = graph_mask.shape[0]`` is the static graph count

Builders:
  ``fully_connected_edges(n, self_loops)``      host numpy (senders, receivers) of one complete graph
  ``batch_complete(pos, scalars, vectors)``     B equal-size complete graphs (jit-able, shapes from the inputs)
  ``radius_graph(pos, r, max_edges, ...)``      edges with ||x_j - x_i|| < r inside each graph, padded to max_edges
  ``pad_graphs(list_of_dicts, n_pad, e_pad)``   host-side batching of ragged graphs
  ``validate_graph(g, dim=...)``                the boundary checks (shapes, index ranges, finiteness)
  ``segment_sum`` / ``graph_sum``               masked sums over receivers / graphs

Index checks (senders, receivers, segment ids in range) run on concrete (host) arrays only. Inside ``jit``
they are skipped and JAX's indexing rules apply silently: an out-of-range gather ``x[senders]`` is clamped
to the nearest valid node, an out-of-range segment id is dropped from the sum. Validate a graph on the host
(`validate_graph`, or any public function called outside ``jit``) before jitting over it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, is_traced

__all__ = [
    "Graph",
    "batch_complete",
    "fully_connected_edges",
    "graph_sum",
    "pad_graphs",
    "radius_graph",
    "segment_sum",
    "validate_graph",
]


class Graph(NamedTuple):
    """A (batch of) padded graph(s); see the module docstring for every field's shape."""

    pos: jax.Array
    scalars: jax.Array
    vectors: jax.Array
    senders: jax.Array
    receivers: jax.Array
    node_graph: jax.Array
    node_mask: jax.Array
    edge_mask: jax.Array
    graph_mask: jax.Array

    @property
    def n_graphs(self) -> int:
        """Static number of graph slots G (padding graphs included)."""
        return self.graph_mask.shape[-1]

    @property
    def n_nodes(self) -> int:
        return self.pos.shape[-2]

    @property
    def n_edges(self) -> int:
        return self.senders.shape[-1]


def _check_int(name, v, low=0):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")


def _check_index(name: str, idx, hi: int) -> None:
    """1-D integer index array with values in [0, hi) (values checked on concrete arrays only)."""
    check_array(name, idx, ndim=1, kind="iu")
    if not is_traced(idx) and idx.size:
        a = np.asarray(idx)
        if a.min() < 0 or a.max() >= hi:
            raise ValueError(f"{name}: expected indices in [0, {hi}), got values in [{a.min()}, {a.max()}]")


def _check_edges(senders, receivers, n: int, edge_mask=None) -> None:
    """Senders/receivers ``i[E]`` indexing ``n`` nodes, and an optional ``bool[E]`` edge mask."""
    _check_index("senders", senders, n)
    _check_index("receivers", receivers, n)
    if receivers.shape != senders.shape:
        raise ValueError(f"receivers: expected the shape of senders {tuple(senders.shape)}, got {tuple(receivers.shape)}")
    if edge_mask is not None:
        check_array("edge_mask", edge_mask, shape=tuple(senders.shape), kind="b")


def fully_connected_edges(n: int, self_loops: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Senders, receivers ``i32[n*n]`` (or ``n*(n-1)`` without self-loops) of the complete graph on n nodes.

    Receiver-major order: edge ``i*n + j`` is ``j -> i``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n: expected a non-negative int, got {n!r}")
    r, s = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = np.ones((n, n), bool) if self_loops else ~np.eye(n, dtype=bool)
    return s[keep].astype(np.int32), r[keep].astype(np.int32)


def batch_complete(
    pos: jax.Array,
    scalars: jax.Array | None = None,
    vectors: jax.Array | None = None,
    *,
    self_loops: bool = True,
) -> Graph:
    """B complete graphs of n nodes each as one padded-free ``Graph`` (N = B n, E = B n^2 or B n (n-1)).

    Args:
      pos: f[B, n, dim]; scalars: f[B, n, Cs] or None (Cs = 0); vectors: f[B, n, Cv, dim] or None (Cv = 0).
    Works under ``jit``/``vmap``: the edge lists are numpy constants built from the static shapes.
    """
    check_array("pos", pos, ndim=3, finite=False)
    b, n, dim = pos.shape
    if scalars is None:
        scalars = jnp.zeros((b, n, 0), pos.dtype)
    if vectors is None:
        vectors = jnp.zeros((b, n, 0, dim), pos.dtype)
    check_array("scalars", scalars, ndim=3, shape=(b, n, None), finite=False)
    check_array("vectors", vectors, ndim=4, shape=(b, n, None, dim), finite=False)
    s, r = fully_connected_edges(n, self_loops)
    offs = (np.arange(b, dtype=np.int32) * n)[:, None]
    return Graph(
        pos=pos.reshape(b * n, dim),
        scalars=scalars.reshape(b * n, -1),
        vectors=vectors.reshape(b * n, vectors.shape[2], dim),
        senders=jnp.asarray((s[None] + offs).reshape(-1)),
        receivers=jnp.asarray((r[None] + offs).reshape(-1)),
        node_graph=jnp.asarray(np.repeat(np.arange(b, dtype=np.int32), n)),
        node_mask=jnp.ones(b * n, bool),
        edge_mask=jnp.ones(b * len(s), bool),
        graph_mask=jnp.ones(b, bool),
    )


def radius_graph(
    pos: jax.Array,
    radius: float,
    max_edges: int,
    *,
    node_graph: jax.Array | None = None,
    node_mask: jax.Array | None = None,
    self_loops: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Edges j -> i with ``||x_j - x_i|| < radius`` inside the same graph, padded to ``max_edges``.

    Returns ``(senders i32[max_edges], receivers i32[max_edges], edge_mask bool[max_edges])``; padding edges
    are ``0 -> 0`` with mask False. O(N^2) candidate pairs (fine for molecules / small clouds); jit-able
    (``radius`` and ``max_edges`` static). Edges beyond ``max_edges`` are dropped; the host check raises then.
    """
    check_array("pos", pos, ndim=2)
    if isinstance(radius, bool) or not isinstance(radius, (int, float, np.number)) or not np.isfinite(radius) \
            or not radius > 0:  # fmt: skip
        raise ValueError(f"radius: expected a positive float, got {radius!r}")
    if isinstance(max_edges, bool) or not isinstance(max_edges, (int, np.integer)) or max_edges < 1:
        raise ValueError(f"max_edges: expected a positive int, got {max_edges!r}")
    n = pos.shape[0]
    if node_graph is not None:
        check_array("node_graph", node_graph, shape=(n,), kind="iu")
    if node_mask is not None:
        check_array("node_mask", node_mask, shape=(n,), kind="b")
    node_graph = jnp.zeros(n, jnp.int32) if node_graph is None else node_graph
    node_mask = jnp.ones(n, bool) if node_mask is None else node_mask
    d2 = jnp.sum((pos[:, None, :] - pos[None, :, :]) ** 2, -1)  # [i, j]
    ok = (d2 < radius**2) & (node_graph[:, None] == node_graph[None, :])
    ok &= node_mask[:, None] & node_mask[None, :]
    if not self_loops:
        ok &= ~jnp.eye(n, dtype=bool)
    if not is_traced(ok):
        count = int(ok.sum())
        if count > max_edges:
            raise ValueError(f"max_edges: the radius graph has {count} edges, more than max_edges={max_edges}")
    recv, send = jnp.nonzero(ok, size=max_edges, fill_value=0)
    mask = jnp.arange(max_edges) < ok.sum()
    return send.astype(jnp.int32), recv.astype(jnp.int32), mask


def pad_graphs(graphs: list[dict], n_pad: int, e_pad: int, g_pad: int | None = None) -> Graph:
    """Host-side batching of ragged graphs into one padded ``Graph``.

    Each item is a dict with ``pos f[n_k, dim]``, ``senders``/``receivers`` (local indices, i[e_k]) and optional
    ``scalars f[n_k, Cs]``, ``vectors f[n_k, Cv, dim]``. Padding nodes sit at the origin with ``node_graph`` the
    last slot and ``node_mask`` False; padding edges are ``0 -> 0`` with ``edge_mask`` False.
    """
    if not isinstance(graphs, (list, tuple)) or not graphs:
        raise ValueError(f"graphs: expected a non-empty list of dicts, got {graphs!r:.60}")
    for k, g in enumerate(graphs):
        if not isinstance(g, dict) or "pos" not in g or "senders" not in g or "receivers" not in g:
            raise ValueError(f"graphs[{k}]: expected a dict with pos, senders and receivers")
        check_array(f"graphs[{k}]['pos']", np.asarray(g["pos"]), ndim=2)
        if len(g["senders"]) != len(g["receivers"]):
            raise ValueError(f"graphs[{k}]: senders and receivers differ in length")
    _check_int("n_pad", n_pad)
    _check_int("e_pad", e_pad)
    if g_pad is not None:
        _check_int("g_pad", g_pad, 1)
    g_pad = len(graphs) if g_pad is None else g_pad
    n_tot = sum(len(g["pos"]) for g in graphs)
    e_tot = sum(len(g["senders"]) for g in graphs)
    if n_tot > n_pad:
        raise ValueError(f"n_pad: the graphs have {n_tot} nodes, more than n_pad={n_pad}")
    if e_tot > e_pad:
        raise ValueError(f"e_pad: the graphs have {e_tot} edges, more than e_pad={e_pad}")
    if len(graphs) > g_pad:
        raise ValueError(f"g_pad: got {len(graphs)} graphs, more than g_pad={g_pad}")
    dim = np.shape(graphs[0]["pos"])[1]
    first = graphs[0]
    cs = np.shape(first.get("scalars", np.zeros((0, 0))))[1]
    cv = np.shape(first.get("vectors", np.zeros((0, 0, dim))))[1]
    dtype = np.asarray(first["pos"]).dtype
    pos = np.zeros((n_pad, dim), dtype)
    sca = np.zeros((n_pad, cs), dtype)
    vec = np.zeros((n_pad, cv, dim), dtype)
    snd = np.zeros(e_pad, np.int32)
    rcv = np.zeros(e_pad, np.int32)
    ng = np.full(n_pad, g_pad - 1, np.int32)
    nm = np.zeros(n_pad, bool)
    em = np.zeros(e_pad, bool)
    no = eo = 0
    for k, g in enumerate(graphs):
        n, e = len(g["pos"]), len(g["senders"])
        s, r = np.asarray(g["senders"]), np.asarray(g["receivers"])
        if e and (s.max() >= n or r.max() >= n or s.min() < 0 or r.min() < 0):
            raise ValueError(f"graphs[{k}]: sender/receiver index out of range [0, {n})")
        pos[no : no + n] = g["pos"]
        if cs:
            sca[no : no + n] = g["scalars"]
        if cv:
            vec[no : no + n] = g["vectors"]
        snd[eo : eo + e], rcv[eo : eo + e] = s + no, r + no
        ng[no : no + n], nm[no : no + n], em[eo : eo + e] = k, True, True
        no, eo = no + n, eo + e
    gm = np.arange(g_pad) < len(graphs)
    return Graph(*(jnp.asarray(a) for a in (pos, sca, vec, snd, rcv, ng, nm, em, gm)))


def validate_graph(g: Graph, *, dim: int | None = None, in_scalar: int | None = None,
                   in_vector: int | None = None) -> None:  # fmt: skip
    """Boundary checks with clear ``ValueError``s: shapes agree, indices in range, no NaN/inf in ``pos``.

    Shape checks run under ``jit`` too; value checks (finiteness, index ranges) only on concrete arrays.
    """
    if not isinstance(g, Graph):
        raise ValueError(f"g: expected a zoo.geometric.graph.Graph, got {type(g).__name__}")
    check_array("pos", g.pos, ndim=2)
    n, d = g.pos.shape
    if dim is not None and d != dim:
        raise ValueError(f"pos: expected last dimension dim={dim}, got shape {tuple(g.pos.shape)}")
    check_array("scalars", g.scalars, ndim=2, shape=(n, in_scalar), finite=False)
    check_array("vectors", g.vectors, ndim=3, shape=(n, in_vector, d), finite=False)
    check_array("senders", g.senders, ndim=1, kind="iu")
    e = g.senders.shape[0]
    check_array("receivers", g.receivers, ndim=1, shape=(e,), kind="iu")
    check_array("edge_mask", g.edge_mask, ndim=1, shape=(e,), kind="b")
    check_array("node_graph", g.node_graph, ndim=1, shape=(n,), kind="iu")
    check_array("node_mask", g.node_mask, ndim=1, shape=(n,), kind="b")
    check_array("graph_mask", g.graph_mask, ndim=1, kind="b")
    if e and n == 0:
        raise ValueError(f"senders: an empty graph (0 nodes) cannot have {e} edges")
    for name, idx, hi in (("senders", g.senders, n), ("receivers", g.receivers, n),
                          ("node_graph", g.node_graph, g.n_graphs)):  # fmt: skip
        if not is_traced(idx) and idx.size:
            a = np.asarray(idx)
            if a.min() < 0 or a.max() >= hi:
                raise ValueError(f"{name}: expected indices in [0, {hi}), got values in [{a.min()}, {a.max()}]")


def segment_sum(data: jax.Array, segment_ids: jax.Array, num_segments: int, mask: jax.Array | None = None):
    """``out[k] = sum_{e: ids[e] = k, mask[e]} data[e]`` (``data: f[E, ...]`` -> ``f[num_segments, ...]``).

    Ids outside [0, num_segments) raise on concrete arrays; under ``jit`` they are dropped (module docstring).
    """
    _check_int("num_segments", num_segments)
    check_array("data", data, ndim=range(1, 32), finite=False)
    _check_index("segment_ids", segment_ids, num_segments)
    if segment_ids.shape[0] != data.shape[0]:
        raise ValueError(f"segment_ids: expected {data.shape[0]} ids (one per row of data), got {segment_ids.shape[0]}")
    if mask is not None:
        check_array("mask", mask, shape=(data.shape[0],), finite=False)
    if mask is not None:
        data = jnp.where(mask.reshape(mask.shape + (1,) * (data.ndim - 1)), data, 0)
    return jax.ops.segment_sum(data, segment_ids, num_segments=num_segments)


def graph_sum(x: jax.Array, g: Graph) -> jax.Array:
    """Sum of node values per graph over real nodes: ``x: f[N, ...]`` -> ``f[G, ...]``."""
    if not isinstance(g, Graph):
        raise ValueError(f"g: expected a zoo.geometric.graph.Graph, got {type(g).__name__}")
    check_array("x", x, ndim=range(1, 32), finite=False)
    if x.shape[0] != g.n_nodes:
        raise ValueError(f"x: expected {g.n_nodes} rows (one per node of g), got shape {tuple(x.shape)}")
    return segment_sum(x, g.node_graph, g.n_graphs, g.node_mask)
