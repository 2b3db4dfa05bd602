"""Rows for zoo.representation.latent_label_shift."""

import jax
import numpy as np

from zoo.representation import latent_label_shift as lls

from ._row import rows

_M = "zoo.representation.latent_label_shift"
_key = jax.random.key(0)
_q = np.full((4, 2), 0.5)
_f = np.full((6, 4), 0.25, np.float32)
_d = np.array([0, 1, 2, 3, 0, 1])
_pyd = np.full((2, 4), 0.5, np.float32)
_nan = _f.copy()
_nan[0, 0] = np.nan
_params = lls.init_discriminator(_key, 2, 4, hidden=(3,))

ROWS = [
    *rows(f"{_M}.dirichlet_prior_matrix",
          ("r < k", lambda: lls.dirichlet_prior_matrix(0, 5, 3, 0.5, 8.0), "r: need at least k"),
          ("alpha <= 0", lambda: lls.dirichlet_prior_matrix(0, 2, 3, 0.0, 8.0), "alpha"),
          ("max_cond < 1", lambda: lls.dirichlet_prior_matrix(0, 2, 3, 0.5, 0.5), "max_cond"),
          ("rejection exhausted", lambda: lls.dirichlet_prior_matrix(0, 3, 3, 0.5, 1.0, max_tries=3), "max_tries")),
    *rows(f"{_M}.allocate_domains",
          ("label out of range", lambda: lls.allocate_domains(0, np.array([0, 1, 5]), _q), "labels"),
          ("missing class", lambda: lls.allocate_domains(0, np.array([0, 0, 0]), _q), "labels: every class")),
    *rows(f"{_M}.make_semisynthetic", ("unknown base", lambda: lls.make_semisynthetic(0, base="cifar"), "base")),
    *rows(f"{_M}.make_blob_mixture",
          ("n_per_domain 0", lambda: lls.make_blob_mixture(0, _q, 0), "n_per_domain"),
          ("q not 2-D", lambda: lls.make_blob_mixture(0, np.ones(3), 5), "q")),
    *rows(f"{_M}.blob_domain_posterior",
          ("NaN x", lambda: lls.blob_domain_posterior(np.array([[np.nan, 0.0]]), _q), "x"),
          ("x not 2-D", lambda: lls.blob_domain_posterior(np.zeros(3), _q), "x")),
    *rows(f"{_M}.init_discriminator", ("n_domains 1", lambda: lls.init_discriminator(_key, 2, 1), "n_domains"),
          ("float input_dim", lambda: lls.init_discriminator(_key, 2.0, 3), "input_dim", TypeError)),
    *rows(f"{_M}.domain_posteriors", ("NaN x", lambda: lls.domain_posteriors(_params, np.array([[np.nan, 1.0]])), "x")),
    *rows(f"{_M}.discriminator_loss",
          ("missing key", lambda: lls.discriminator_loss(_params, {"x": np.zeros((2, 2))}), "batch"),
          ("domain out of range", lambda: lls.discriminator_loss(_params, {"x": np.zeros((2, 2)), "d": np.array([0, 9])}),
           r"batch\['d'\]")),
    *rows(f"{_M}.cluster_domain_matrix",
          ("empty domain", lambda: lls.cluster_domain_matrix(np.array([0, 1]), np.array([0, 0]), 2, 2), "domains"),
          ("label out of range", lambda: lls.cluster_domain_matrix(np.array([0, 3]), np.array([0, 1]), 2, 2), "labels")),
    *rows(f"{_M}.nmf",
          ("k too large", lambda: lls.nmf(_key, _f, 5), "k"),
          ("negative entries", lambda: lls.nmf(_key, -_f, 2), "a: expected a non-negative"),
          ("unknown solver", lambda: lls.nmf(_key, _f, 2, solver="cd"), "solver"),
          ("NaN", lambda: lls.nmf(_key, _nan, 2), "a")),
    *rows(f"{_M}.anchor_factorize",
          ("k too large", lambda: lls.anchor_factorize(_f, 7), "k"),
          ("negative counts", lambda: lls.anchor_factorize(-_f, 2), "counts")),
    *rows(f"{_M}.combine",
          ("NaN posteriors", lambda: lls.combine(_nan, _pyd, _d), "p_d_given_x"),
          ("width mismatch", lambda: lls.combine(_f[:, :3], _pyd, _d), "p_d_given_x"),
          ("domain out of range", lambda: lls.combine(_f, _pyd, _d + 4), "domains"),
          ("r < k", lambda: lls.combine(_f[:, :2], np.full((3, 2), 1 / 3, np.float32), _d % 2), "r >= k"),
          ("unknown method", lambda: lls.combine(_f, _pyd, _d, method="lsq"), "method")),
    *rows(f"{_M}.ddfa_fit",
          ("more clusters than points", lambda: lls.ddfa_fit(_key, _f, _d, k=2, m=7), "m: expected at most"),
          ("m < k", lambda: lls.ddfa_fit(_key, _f, _d, k=3, m=2), "m: expected at least"),
          ("r < k", lambda: lls.ddfa_fit(_key, _f, _d, k=5, m=5), "k: latent label shift needs r >= k"),
          ("NaN posteriors", lambda: lls.ddfa_fit(_key, _nan, _d, k=2, m=3), "p_d_given_x")),
    *rows(f"{_M}.ddfa_predict",
          ("NaN posteriors", lambda: lls.ddfa_predict(lls.DDFAState(_f, _pyd, _f, _f), _nan, _d), "p_d_given_x")),
    *rows(f"{_M}.hungarian_accuracy",
          ("pred out of range", lambda: lls.hungarian_accuracy(np.array([0, 4]), np.array([0, 1]), 2), "pred"),
          ("length mismatch", lambda: lls.hungarian_accuracy(np.array([0, 1]), np.array([0, 1, 1]), 2), "true")),
    *rows(f"{_M}.prior_l1",
          ("not a permutation", lambda: lls.prior_l1(_pyd, _pyd, np.array([0, 0])), "perm"),
          ("shape mismatch", lambda: lls.prior_l1(_pyd, _pyd[:, :3], np.array([0, 1])), "q_hat")),
]
