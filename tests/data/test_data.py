import subprocess
import sys

import jax
import numpy as np
import pytest

import zoo.data as zd

KEY = jax.random.key(0)
ARRAYS = {"x": np.arange(20 * 3, dtype=np.float32).reshape(20, 3), "y": np.arange(20, dtype=np.int32)}
_batch_jit = jax.jit(lambda s: zd.batch_at(ARRAYS, s, batch_size=6, key=KEY))


def test_import_zoo_is_light():
    code = "import sys, zoo, zoo.data, zoo.train, zoo.registry; print('datasets' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_batch_at_epoch_is_a_permutation_and_deterministic():
    spe = zd.steps_per_epoch(20, 6)
    assert spe == 3
    for epoch in range(2):
        rows = np.concatenate([np.asarray(_batch_jit(epoch * spe + i)["y"]) for i in range(spe)])
        assert len(set(rows.tolist())) == 18  # no repeats within an epoch; 2 rows dropped
    e0 = [np.asarray(_batch_jit(i)["y"]) for i in range(3)]
    e1 = [np.asarray(_batch_jit(3 + i)["y"]) for i in range(3)]
    assert not all(np.array_equal(a, b) for a, b in zip(e0, e1))  # reshuffled per epoch
    np.testing.assert_array_equal(_batch_jit(4)["x"], zd.batch_at(ARRAYS, 4, batch_size=6, key=KEY)["x"])
    b = _batch_jit(4)
    np.testing.assert_array_equal(np.asarray(b["x"])[:, 0], np.asarray(b["y"]) * 3)  # rows stay aligned


def test_host_batches_match_batch_at():
    host = list(zd.batches(ARRAYS, 6, KEY, epochs=2))
    assert len(host) == 6
    for s, b in enumerate(host):
        np.testing.assert_array_equal(b["y"], np.asarray(_batch_jit(s)["y"]))


def test_batching_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        zd.batch_at(ARRAYS, 0, batch_size=21, key=KEY)
    with pytest.raises(ValueError, match="leading dimensions differ"):
        zd.batch_at({"x": np.zeros(3), "y": np.zeros(4)}, 0, batch_size=1, key=KEY)


def test_blobs_pure_and_checked():
    a, b = zd.blobs(3, n_samples=30, centers=4), zd.blobs(3, n_samples=30, centers=4)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], zd.blobs(4, n_samples=30, centers=4)["x"])
    assert a["x"].shape == (30, 2) and np.bincount(a["y"]).tolist() == [8, 8, 7, 7]
    # each point is closer to its own centre than the blob spacing allows for others, on average
    d = np.linalg.norm(a["x"] - a["centers"][a["y"]], axis=1)
    assert d.mean() < 2.5
    with pytest.raises(ValueError, match="centers"):
        zd.blobs(0, n_samples=3, centers=5)
    with pytest.raises(ValueError, match="cluster_std"):
        zd.blobs(0, cluster_std=-1.0)


def test_cached_dataset_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    calls = []

    def gen(seed, *, n):
        calls.append(seed)
        rng = np.random.default_rng(seed)
        return {"x": rng.standard_normal((n, 2, 3)).astype(np.float32), "y": np.arange(n, dtype=np.int32)}

    ds = zd.cached_dataset(gen, 1, n=7)
    again = zd.cached_dataset(gen, 1, n=7)
    assert calls == [1]  # the second call read the disk cache
    a = zd.as_arrays(again)
    np.testing.assert_array_equal(a["x"], gen(1, n=7)["x"])
    assert a["x"].dtype == np.float32 and a["y"].dtype == np.int32 and a["x"].shape == (7, 2, 3)
    assert len(ds) == 7
    zd.cached_dataset(gen, 2, n=7)
    assert calls == [1, 1, 2]  # a different seed is a different entry


def test_bundled_loaders():
    d = zd.load_digits()
    assert d["x"].shape == (1797, 64) and d["x"].dtype == np.float32
    assert 0.0 <= d["x"].min() and d["x"].max() == 1.0 and set(np.unique(d["y"])) == set(range(10))
    w = zd.load_bundled("wine", standardize=True)
    np.testing.assert_allclose(w["x"].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(w["x"].std(0), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="name: expected one of"):
        zd.load_bundled("mnist")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 100, 1797])
def test_permute_index_is_a_bijection(n):
    p = np.asarray(zd.permute_index(jax.random.key(3), np.arange(n), n))
    assert sorted(p.tolist()) == list(range(n))


def test_permute_index_is_keyed_and_spread():
    keys = jax.random.split(jax.random.key(0), 2000)
    first = np.asarray(jax.vmap(lambda k: zd.permute_index(k, np.arange(10), 10))(keys))
    counts = np.bincount(first[:, 0], minlength=10)  # where position 0 goes: ~200 each
    assert counts.min() > 140 and counts.max() < 260, counts
    assert len({tuple(r) for r in first.tolist()}) > 1900  # distinct keys give distinct orders
