"""Rows for zoo.quant: the PTQ core, GPTQ, packing, FlexRound (+ AdaRound / AdaQuant), AdaDim, the models.

Inputs are tiny numpy arrays and hand-built states, so building the rows compiles nothing.
"""

import jax
import numpy as np

from zoo.quant import adadim as A
from zoo.quant import core as C
from zoo.quant import flexround as F
from zoo.quant import gptq as G
from zoo.quant import models as M
from zoo.quant import packing as P

from ._row import rows

_rng = np.random.default_rng(0)
W = _rng.normal(size=(8, 4)).astype(np.float32)  # [K, N]
W_NAN = W.copy()
W_NAN[1, 2] = np.nan
W_INF = W.copy()
W_INF[0, 0] = np.inf
X = _rng.normal(size=(6, 8)).astype(np.float32)  # [n, K]
X_NAN = X.copy()
X_NAN[2, 3] = np.nan
EMPTY = np.zeros((0, 4), np.float32)
SPEC = C.QuantSpec(bits=4)  # per output channel: qparams [1, 4]
QP = C.QParams(np.full((1, 4), 0.1, np.float32), np.zeros((1, 4), np.float32))
QP0 = C.QParams(np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32))
QP_BAD = C.QParams(np.ones((2, 4), np.float32), np.zeros((2, 4), np.float32))
CODES = np.zeros((8, 4), np.uint8)
H = np.eye(8, dtype=np.float32)
H_NAN = H.copy()
H_NAN[0, 1] = np.nan
KEY = jax.random.PRNGKey(0)

TSPEC = C.QuantSpec(bits=3, granularity="tensor")
FSTATE_BAD = F.FlexRoundState(np.zeros((), np.float32), np.zeros((3, 4), np.float32), np.zeros((1, 4), np.float32),
                              None, np.zeros((), np.float32))  # fmt: skip
AQSTATE_BAD = F.AdaQuantState(np.zeros((3, 4), np.float32), np.zeros((), np.float32), np.zeros((), np.float32))
ARSTATE = F.AdaRoundState(np.zeros((8, 4), np.float32), np.ones((), np.float32), np.zeros((), np.float32))


def _apply_q(qstate, frozen, x):
    return x


# tiny models, hand-built (no compilation)
MLP = {"Dense_0": {"kernel": np.zeros((4, 3), np.float32), "bias": np.zeros(3, np.float32)},
       "Dense_1": {"kernel": np.zeros((3, 2), np.float32), "bias": np.zeros(2, np.float32)}}  # fmt: skip
LMC = M.TinyLMConfig(d_model=4, n_layers=1, n_heads=2, d_ff=8, seq_len=4)


def _lin(a, b):
    return {"kernel": np.zeros((a, b), np.float32), "bias": np.zeros(b, np.float32)}


def _ln(d):
    return {"scale": np.ones(d, np.float32), "bias": np.zeros(d, np.float32)}


BLOCK = {"ln1": _ln(4), "qkv": _lin(4, 12), "out": _lin(4, 4), "ln2": _ln(4), "up": _lin(4, 8), "down": _lin(8, 4)}
LM = {"embed": np.zeros((13, 4), np.float32), "pos": np.zeros((4, 4), np.float32), "block_0": BLOCK,
      "ln_f": _ln(4), "head": _lin(4, 13)}  # fmt: skip
TOK = np.zeros((2, 3), np.int32)
H3 = np.zeros((2, 3, 4), np.float32)
H3_BAD = np.zeros((2, 3, 5), np.float32)

ROWS = [
    # ------------------------------------------------------------------ zoo.quant.core
    *rows("zoo.quant.core.check_weight",
          ("wrong shape", lambda: C.check_weight("w", W[0], SPEC), "w: expected a kernel"),
          ("NaN", lambda: C.check_weight("w", W_NAN, SPEC), "w: contains 1 non-finite"),
          ("wrong type", lambda: C.check_weight("w", W, "int4"), "spec")),
    *rows("zoo.quant.core.compute_qparams",
          ("empty", lambda: C.compute_qparams(EMPTY, SPEC), "w: expected a non-empty kernel"),
          ("NaN", lambda: C.compute_qparams(W_NAN, SPEC), "w: contains"),
          ("wrong dtype", lambda: C.compute_qparams(CODES, SPEC), "w: expected a float kernel"),
          ("bad choice", lambda: C.compute_qparams(W, SPEC, "l2"), "method"),
          ("group size", lambda: C.compute_qparams(W, C.QuantSpec(bits=4, group_size=3)), "group_size")),
    *rows("zoo.quant.core.qparam_shape",
          ("wrong shape", lambda: C.qparam_shape((8,), SPEC), "shape"),
          ("wrong type", lambda: C.qparam_shape((8, 4), None), "spec")),
    *rows("zoo.quant.core.expand",
          ("wrong shape", lambda: C.expand(np.ones((2, 4)), SPEC, (8, 4)), "qparam")),
    *rows("zoo.quant.core.quantize",
          ("inf", lambda: C.quantize(W_INF, QP, SPEC), "w: contains"),
          ("wrong shape", lambda: C.quantize(W, QP_BAD, SPEC), "qp.scale")),
    *rows("zoo.quant.core.dequantize",
          ("wrong shape", lambda: C.dequantize(CODES, QP_BAD, SPEC), "qp.scale"),
          ("zero scale", lambda: C.dequantize(CODES, QP0, SPEC), "qp.scale: expected positive"),
          ("wrong type", lambda: C.dequantize(np.array(["a"] * 4).reshape(2, 2), QP, SPEC), "q")),
    *rows("zoo.quant.core.fake_quant",
          ("zero scale", lambda: C.fake_quant(W, QP0, SPEC), "qp.scale: expected positive"),
          ("NaN", lambda: C.fake_quant(W_NAN, QP, SPEC), "w: contains")),
    *rows("zoo.quant.core.fake_quant_raw",
          ("wrong type", lambda: C.fake_quant_raw(W, QP, "int4"), "spec"),
          ("wrong shape", lambda: C.fake_quant_raw(W, QP_BAD, SPEC), "qp")),
    *rows("zoo.quant.core.fake_quant_ste",
          ("NaN", lambda: C.fake_quant_ste(W_NAN, QP, SPEC), "w: contains"),
          ("zero scale", lambda: C.fake_quant_ste(W, QP0, SPEC), "qp.scale")),
    *rows("zoo.quant.core.rtn",
          ("empty", lambda: C.rtn(EMPTY, SPEC), "w: expected a non-empty"),
          ("bad choice", lambda: C.rtn(W, SPEC, "best"), "method")),
    *rows("zoo.quant.core.round_ste", ("wrong type", lambda: C.round_ste("1.5"), "x")),
    *rows("zoo.quant.core.floor_ste", ("wrong type", lambda: C.floor_ste(None), "x")),
    *rows("zoo.quant.core.clip_codes",
          ("out of range", lambda: C.clip_codes(np.zeros(3), 5.0, 1.0), "lo"),
          ("wrong type", lambda: C.clip_codes("r", 0, 1), "r")),
    *rows("zoo.quant.core.recon_loss",
          ("wrong shape", lambda: C.recon_loss(np.zeros((4, 3)), np.zeros((4, 2))), "y_tgt"),
          ("bad choice", lambda: C.recon_loss(np.zeros((4, 3)), np.zeros((4, 3)), "median"), "reduction"),
          ("empty", lambda: C.recon_loss(np.zeros((0, 3)), np.zeros((0, 3))), "y")),
    *rows("zoo.quant.core.reconstruct_block",
          ("out of range", lambda: C.reconstruct_block(_apply_q, W, None, X, X, steps=0, batch_size=2, lr=1e-3,
                                                       key=KEY), "steps"),
          ("bad choice", lambda: C.reconstruct_block(_apply_q, W, None, X, X, steps=2, batch_size=2, lr=1e-3,
                                                     key=KEY, reduction="avg"), "reduction"),
          ("NaN", lambda: C.reconstruct_block(_apply_q, W, None, X_NAN, X, steps=2, batch_size=2, lr=1e-3,
                                              key=KEY), "x_in"),
          ("out of range", lambda: C.reconstruct_block(_apply_q, W, None, X, X, steps=2, batch_size=2, lr=0.0,
                                                       key=KEY), "lr")),  # fmt: skip
    # ------------------------------------------------------------------ zoo.quant.gptq
    *rows("zoo.quant.gptq.hessian_init",
          ("out of range", lambda: G.hessian_init(0), "K"),
          ("wrong type", lambda: G.hessian_init(8, np.int32), "dtype")),
    *rows("zoo.quant.gptq.hessian_update",
          ("wrong shape", lambda: G.hessian_update(H, 0, X[:, :5]), "x"),
          ("NaN", lambda: G.hessian_update(H, 0, X_NAN), "x: contains"),
          ("out of range", lambda: G.hessian_update(H, -1, X), "n"),
          ("empty", lambda: G.hessian_update(H, 0, np.zeros((0, 8), np.float32)), "x")),
    *rows("zoo.quant.gptq.gptq_quantize",
          ("NaN", lambda: G.gptq_quantize(W, H_NAN, SPEC), "H: contains"),
          ("wrong shape", lambda: G.gptq_quantize(W, H[:4, :4], SPEC), "H"),
          ("out of range", lambda: G.gptq_quantize(W, H, SPEC, percdamp=0.0), "percdamp"),
          ("out of range", lambda: G.gptq_quantize(W, H, SPEC, blocksize=0), "blocksize")),
    # ------------------------------------------------------------------ zoo.quant.packing
    *rows("zoo.quant.packing.pack_int4",
          ("out of range", lambda: P.pack_int4(np.full((8, 4), 16, np.uint8)), "q: expected codes in"),
          ("wrong shape", lambda: P.pack_int4(np.zeros((6, 4), np.uint8)), "q"),
          ("bad choice", lambda: P.pack_int4(CODES, container="u16"), "container")),
    *rows("zoo.quant.packing.unpack_int4",
          ("wrong type", lambda: P.unpack_int4(np.zeros((1, 4), np.int32)), "packed")),
    *rows("zoo.quant.packing.storage_bits", ("out of range", lambda: P.storage_bits(9), "bits")),
    *rows("zoo.quant.packing.dequantize_linear", ("wrong type", lambda: P.dequantize_linear(W), "ql")),
    *rows("zoo.quant.packing.quantized_linear",
          ("wrong type", lambda: P.quantized_linear(W, QP, SPEC), "codes"),
          ("wrong shape", lambda: P.quantized_linear(CODES, QP_BAD, SPEC), "qparams.scale"),
          ("NaN", lambda: P.quantized_linear(CODES, C.QParams(np.full((1, 4), np.nan), QP.zero), SPEC),
           "qparams.scale")),
    *rows("zoo.quant.packing.from_gptq", ("wrong type", lambda: P.from_gptq((CODES, QP), SPEC), "res")),
    *rows("zoo.quant.packing.from_autogptq",
          ("wrong shape", lambda: P.from_autogptq(np.zeros((1, 8), np.int32), np.zeros((1, 2), np.int32),
                                                  np.ones((1, 8), np.float32)), "qzeros"),
          ("out of range", lambda: P.from_autogptq(np.zeros((1, 8), np.int32), np.zeros((1, 1), np.int32),
                                                   np.ones((1, 8), np.float32), np.full(8, 3)), "g_idx")),  # fmt: skip
    *rows("zoo.quant.packing.path_str", ("wrong type", lambda: P.path_str("Dense_0/kernel"), "path")),
    *rows("zoo.quant.packing.is_kernel", ("wrong type", lambda: P.is_kernel(("Dense_0", "kernel"), W), "path")),
    *rows("zoo.quant.packing.make_plan",
          ("bad regex", lambda: P.make_plan({"(": SPEC}), "rules"),
          ("wrong type", lambda: P.make_plan({"head": 4}), "spec"),
          ("wrong type", lambda: P.make_plan(where=3), "where")),
    *rows("zoo.quant.packing.apply_plan",
          ("bad choice", lambda: P.apply_plan({"kernel": W}, SPEC, mode="int4"), "mode"),
          ("bad choice", lambda: P.apply_plan({"kernel": W}, SPEC, method="l1"), "method"),
          ("wrong type", lambda: P.apply_plan({"kernel": W}, 4), "plan"),
          ("NaN", lambda: P.apply_plan({"kernel": W_NAN}, SPEC), "kernel: contains")),
    *rows("zoo.quant.packing.dequantize_params",
          ("wrong type", lambda: P.dequantize_params({"kernel": W}, dtype=np.int8), "dtype")),
    # ------------------------------------------------------------------ zoo.quant.flexround
    *rows("zoo.quant.flexround.init_flexround",
          ("wrong shape", lambda: F.init_flexround(np.zeros((2, 3, 4), np.float32), TSPEC), "w"),
          ("NaN", lambda: F.init_flexround(W_NAN, TSPEC), "w: contains"),
          ("bad choice", lambda: F.init_flexround(W, TSPEC, grid="l1"), "grid"),
          ("out of range", lambda: F.init_flexround(W, C.QuantSpec(bits=3, granularity="ic")), "spec")),
    *rows("zoo.quant.flexround.flexround_weight",
          ("wrong shape", lambda: F.flexround_weight(W, FSTATE_BAD, TSPEC), "FlexRoundState.log_S2"),
          ("NaN", lambda: F.flexround_weight(W_NAN, FSTATE_BAD, TSPEC), "w: contains")),
    *rows("zoo.quant.flexround.flexround_export",
          ("wrong shape", lambda: F.flexround_export(W, FSTATE_BAD, TSPEC), "FlexRoundState.log_S2")),
    *rows("zoo.quant.flexround.flexround_flip_stats",
          ("wrong type", lambda: F.flexround_flip_stats(W, ARSTATE, TSPEC), "st")),
    *rows("zoo.quant.flexround.rtn_weight",
          ("NaN", lambda: F.rtn_weight(W_NAN, TSPEC), "w: contains"),
          ("empty", lambda: F.rtn_weight(EMPTY, TSPEC), "w: expected a non-empty")),
    *rows("zoo.quant.flexround.rectified_sigmoid", ("wrong type", lambda: F.rectified_sigmoid("V"), "V")),
    *rows("zoo.quant.flexround.init_adaround",
          ("bad choice", lambda: F.init_adaround(W, TSPEC, grid="best"), "grid"),
          ("wrong type", lambda: F.init_adaround(W, 3), "spec")),
    *rows("zoo.quant.flexround.adaround_weight",
          ("wrong type", lambda: F.adaround_weight(W, FSTATE_BAD, TSPEC, hard=True), "st"),
          ("wrong shape", lambda: F.adaround_weight(W[:4], ARSTATE, TSPEC, hard=True), "AdaRoundState.V")),
    *rows("zoo.quant.flexround.adaround_reg",
          ("wrong type", lambda: F.adaround_reg(FSTATE_BAD, 2.0), "st"),
          ("out of range", lambda: F.adaround_reg(ARSTATE, 0.0), "beta"),
          ("NaN", lambda: F.adaround_reg(ARSTATE, np.nan), "beta")),
    *rows("zoo.quant.flexround.adaround_beta",
          ("out of range", lambda: F.adaround_beta(1, 0), "total"),
          ("out of range", lambda: F.adaround_beta(1, 10, warmup=1.0), "warmup"),
          ("NaN", lambda: F.adaround_beta(np.nan, 10), "step")),
    *rows("zoo.quant.flexround.adaround_reg_fn",
          ("out of range", lambda: F.adaround_reg_fn(0), "total"),
          ("out of range", lambda: F.adaround_reg_fn(10, lam=-1.0), "lam")),
    *rows("zoo.quant.flexround.init_adaquant",
          ("NaN", lambda: F.init_adaquant(W_NAN, TSPEC), "w: contains"),
          ("bad choice", lambda: F.init_adaquant(W, TSPEC, grid="best"), "grid")),
    *rows("zoo.quant.flexround.adaquant_weight",
          ("wrong shape", lambda: F.adaquant_weight(W, AQSTATE_BAD, TSPEC), "AdaQuantState.V")),
    *rows("zoo.quant.flexround.is_kernel", ("wrong type", lambda: F.is_kernel(3, W), "path")),
    *rows("zoo.quant.flexround.ptq",
          ("bad choice", lambda: F.ptq(lambda p, b, x: x, {"l": {"kernel": W}}, ["l"], X, method="flexround",
                                       spec=TSPEC, steps=2, batch_size=2, lr=1e-3, key=KEY, rec_reduction="avg"),
           "rec_reduction"),
          ("out of range", lambda: F.ptq(lambda p, b, x: x, {"l": {"kernel": W}}, ["l"], X, method="flexround",
                                         spec=TSPEC, steps=2, batch_size=7, lr=1e-3, key=KEY), "batch_size"),
          ("NaN", lambda: F.ptq(lambda p, b, x: x, {"l": {"kernel": W}}, ["l"], X_NAN, method="rtn", spec=TSPEC,
                                steps=2, batch_size=2, lr=1e-3, key=KEY), "calib_x"),
          ("bad choice", lambda: F.ptq(lambda p, b, x: x, {"l": {"kernel": W}}, ["m"], X, method="rtn", spec=TSPEC,
                                       steps=2, batch_size=2, lr=1e-3, key=KEY), "block_paths")),  # fmt: skip
    # ------------------------------------------------------------------ zoo.quant.adadim
    *rows("zoo.quant.adadim.quant_spec",
          ("out of range", lambda: A.quant_spec(1, 4, "oc"), "bits"),
          ("bad choice", lambda: A.quant_spec(3, 4, "row"), "dim"),
          ("bad choice", lambda: A.quant_spec(3, 4, "oc", style="rtn"), "style")),
    *rows("zoo.quant.adadim.group_rtn",
          ("bad choice", lambda: A.group_rtn(W, bits=3, group_size=4, dim="col"), "dim"),
          ("group size", lambda: A.group_rtn(W, bits=3, group_size=3, dim="ic"), "group_size"),
          ("NaN", lambda: A.group_rtn(W_NAN, bits=3, group_size=4, dim="oc"), "w: contains")),
    *rows("zoo.quant.adadim.dim_errors",
          ("wrong shape", lambda: A.dim_errors(W, X[:, :5], bits=3, group_size=4), "x"),
          ("empty", lambda: A.dim_errors(W, X[:0], bits=3, group_size=4), "x"),
          ("bad choice", lambda: A.dim_errors(W, X, bits=3, group_size=4, candidates=("oc", "row")), "dim")),
    *rows("zoo.quant.adadim.select_dim",
          ("NaN", lambda: A.select_dim(W_NAN, X, bits=3, group_size=4), "w: contains"),
          ("empty", lambda: A.select_dim(W, X, bits=3, group_size=4, candidates=()), "candidates")),
    *rows("zoo.quant.adadim.rtn_ada",
          ("empty", lambda: A.rtn_ada(W, X[:0], bits=3, group_size=4), "x: the calibration set is empty"),
          ("NaN", lambda: A.rtn_ada(W, X_NAN, bits=3, group_size=4), "x: contains")),
    *rows("zoo.quant.adadim.hessian",
          ("wrong shape", lambda: A.hessian(X[0]), "x"),
          ("NaN", lambda: A.hessian(X_NAN), "x: contains")),
    *rows("zoo.quant.adadim.gptq_dim",
          ("group size", lambda: A.gptq_dim(W, H, bits=3, group_size=3, dim="oc"), "group_size"),
          ("NaN", lambda: A.gptq_dim(W, H_NAN, bits=3, group_size=4, dim="oc"), "H: contains")),
    *rows("zoo.quant.adadim.gptq_ada",
          ("out of range", lambda: A.gptq_ada(W, X, bits=3, group_size=4, percdamp=0.0), "percdamp"),
          ("NaN", lambda: A.gptq_ada(W, X_NAN, bits=3, group_size=4), "x: contains"),
          ("bad choice", lambda: A.gptq_ada(W, X, bits=3, group_size=4, select_with="oracle"), "select_with")),
    *rows("zoo.quant.adadim.get_path", ("missing key", lambda: A.get_path({"a": {}}, ("a", "b")), "path")),
    *rows("zoo.quant.adadim.set_path",
          ("missing key", lambda: A.set_path({"a": {}}, ("b",), 1), "path"),
          ("wrong type", lambda: A.set_path({"a": {}}, "a", 1), "path")),
    *rows("zoo.quant.adadim.quantize_blocks",
          ("empty", lambda: A.quantize_blocks([], {}, X, method="rtn"), "layers"),
          ("bad choice", lambda: A.quantize_blocks([], {}, X, method="awq"), "method"),
          ("wrong type", lambda: A.quantize_blocks([("w", ("w",))], {}, X, method="rtn"), "layers"),
          ("out of range", lambda: A.quantize_blocks([], {}, X, method="rtn", bits=9), "bits")),
    # ------------------------------------------------------------------ zoo.quant.models
    *rows("zoo.quant.models.digits_split", ("out of range", lambda: M.digits_split(n_train=0), "n_train")),
    *rows("zoo.quant.models.init_mlp",
          ("wrong shape", lambda: M.init_mlp(KEY, (64,)), "sizes"),
          ("wrong type", lambda: M.init_mlp(KEY, (4, 3), dtype=np.int32), "dtype")),
    *rows("zoo.quant.models.mlp_layer_names", ("wrong type", lambda: M.mlp_layer_names([1, 2]), "params")),
    *rows("zoo.quant.models.dense",
          ("wrong shape", lambda: M.dense(MLP["Dense_0"], np.zeros((2, 5))), "x"),
          ("wrong type", lambda: M.dense(np.zeros((4, 3)), np.zeros((2, 4))), "p")),
    *rows("zoo.quant.models.mlp_layer", ("out of range", lambda: M.mlp_layer(MLP, 2, np.zeros((2, 3))), "i")),
    *rows("zoo.quant.models.mlp_block_fn",
          ("out of range", lambda: M.mlp_block_fn(0), "n_layers"),
          ("bad choice", lambda: M.mlp_block_fn(2, "relu"), "target")),
    *rows("zoo.quant.models.mlp_apply",
          ("wrong shape", lambda: M.mlp_apply(MLP, np.zeros((2, 5))), "x"),
          ("NaN", lambda: M.mlp_apply(MLP, np.full((2, 4), np.nan)), "x: contains")),
    *rows("zoo.quant.models.mlp_hidden", ("wrong shape", lambda: M.mlp_hidden(MLP, np.zeros(4)), "x")),
    *rows("zoo.quant.models.classification_metrics",
          ("wrong shape", lambda: M.classification_metrics(np.zeros((3, 2)), np.zeros(4, np.int32)), "y"),
          ("out of range", lambda: M.classification_metrics(np.zeros((3, 2)), np.full(3, 2)), "y"),
          ("wrong shape", lambda: M.classification_metrics(np.zeros((3, 2)), np.zeros(3, np.int32), np.zeros((3, 3))),
           "ref_logits")),  # fmt: skip
    *rows("zoo.quant.models.train_mlp",
          ("wrong shape", lambda: M.train_mlp(KEY, np.zeros((64, 5)), np.zeros(64, np.int32)), "x")),
    *rows("zoo.quant.models.add_outliers",
          ("out of range", lambda: M.add_outliers(MLP, units=(0,), factor=0.0), "factor"),
          ("out of range", lambda: M.add_outliers(MLP, units=(7,)), "units")),
    *rows("zoo.quant.models.arithmetic_corpus",
          ("out of range", lambda: M.arithmetic_corpus(0, 0), "n_chars"),
          ("out of range", lambda: M.arithmetic_corpus(0, 10, digits=0), "digits")),
    *rows("zoo.quant.models.init_lm",
          ("wrong type", lambda: M.init_lm(KEY, {"d_model": 4}), "cfg"),
          ("wrong type", lambda: M.init_lm(KEY, LMC, dtype="int8"), "dtype")),
    *rows("zoo.quant.models.layer_norm",
          ("wrong shape", lambda: M.layer_norm(_ln(4), np.zeros((2, 5))), "x"),
          ("out of range", lambda: M.layer_norm(_ln(4), np.zeros((2, 4)), eps=0.0), "eps")),
    *rows("zoo.quant.models.lm_attn_context",
          ("out of range", lambda: M.lm_attn_context(BLOCK, H3, 3), "n_heads"),
          ("wrong shape", lambda: M.lm_attn_context(BLOCK, H3[0], 2), "h")),
    *rows("zoo.quant.models.lm_attention", ("wrong shape", lambda: M.lm_attention(BLOCK, H3_BAD, 2), "h")),
    *rows("zoo.quant.models.lm_mlp",
          ("wrong shape", lambda: M.lm_mlp(BLOCK, H3[0]), "h"),
          ("wrong type", lambda: M.lm_mlp({"up": 1}, H3), "bp")),
    *rows("zoo.quant.models.lm_block", ("wrong shape", lambda: M.lm_block(BLOCK, H3_BAD, 2), "h")),
    *rows("zoo.quant.models.lm_block_fn", ("out of range", lambda: M.lm_block_fn(0), "n_heads")),
    *rows("zoo.quant.models.lm_embed",
          ("wrong type", lambda: M.lm_embed(LM, TOK.astype(np.float32)), "tokens"),
          ("out of range", lambda: M.lm_embed(LM, TOK + 13), "tokens"),
          ("wrong shape", lambda: M.lm_embed(LM, np.zeros((2, 5), np.int32)), "tokens")),
    *rows("zoo.quant.models.lm_head", ("wrong shape", lambda: M.lm_head(LM, H3_BAD), "h")),
    *rows("zoo.quant.models.lm_apply",
          ("out of range", lambda: M.lm_apply(LM, TOK - 1, LMC), "tokens"),
          ("wrong type", lambda: M.lm_apply(LM, TOK, {"n_layers": 1}), "cfg")),
    *rows("zoo.quant.models.lm_nll", ("wrong shape", lambda: M.lm_nll(LM, TOK[:, :1], LMC), "tokens")),
    *rows("zoo.quant.models.lm_windows",
          ("out of range", lambda: M.lm_windows(np.arange(10), 0), "seq_len"),
          ("empty", lambda: M.lm_windows(np.arange(3), 4), "stream")),
    *rows("zoo.quant.models.lm_perplexity",
          ("out of range", lambda: M.lm_perplexity(LM, TOK + 20, LMC), "windows")),
    *rows("zoo.quant.models.train_lm", ("empty", lambda: M.train_lm(KEY, np.zeros(5, np.int32)), "stream")),
    *rows("zoo.quant.models.add_lm_outliers",
          ("out of range", lambda: M.add_lm_outliers(LM, factor=0.0), "factor"),
          ("out of range", lambda: M.add_lm_outliers(LM, dims=(9,)), "dims"),
          ("wrong type", lambda: M.add_lm_outliers({"x": 1}), "params")),
]
