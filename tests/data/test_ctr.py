"""`zoo.data.ctr`: the synthetic multi-domain CTR generator with a known latent cluster structure."""

from __future__ import annotations

import numpy as np

from zoo.data.ctr import synth_multidomain_ctr


def test_ctr_generator_structure():
    d = synth_multidomain_ctr(0, 2000, num_domains=6, num_clusters=3, num_fields=4, vocab=20)
    again = synth_multidomain_ctr(0, 2000, num_domains=6, num_clusters=3, num_fields=4, vocab=20)
    np.testing.assert_array_equal(d["features"], again["features"])
    assert d["features"].shape == (12_000, 5) and d["vocab_sizes"] == (20,) * 4 + (6,)
    np.testing.assert_array_equal(d["features"][:, -1], d["domain"])
    np.testing.assert_array_equal(d["cluster"], d["domain"] % 3)
    assert abs(d["y"].mean() - 0.15) < 0.02
    # clusters differ in their input distribution (field 0's value histograms), domains of a cluster do not
    h = [np.bincount(d["features"][d["domain"] == k, 0], minlength=20) / 2000 for k in range(6)]
    tv = lambda a, b: 0.5 * np.abs(a - b).sum()  # noqa: E731
    assert tv(h[0], h[1]) > 0.3 and tv(h[0], h[2]) > 0.3 and tv(h[0], h[3]) < 0.1
    # the labels follow the true logits (Bayes AUC well above chance)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(d["y"], d["logit"]) > 0.7
    z = synth_multidomain_ctr(1, 100, num_domains=4, zipf_sizes=True)
    sizes = np.bincount(z["domain"])
    assert np.all(np.diff(sizes) <= 0) and sizes[0] > sizes[-1]
