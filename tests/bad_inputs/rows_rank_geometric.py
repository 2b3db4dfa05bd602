"""Rows for GroupRank, RLCCF, the retrieval / reverse / skillmix envs and the geometric family (PONITA, EGNN, graphs).

Every call fails at the API boundary, before anything is compiled (tiny numpy inputs built here once).
"""

import jax
import numpy as np

from zoo.geometric import egnn as eg
from zoo.geometric import graph as gg
from zoo.geometric import ponita as P
from zoo.rl import grouprank as gr
from zoo.rl import rlccf as rc
from zoo.rl import tiny_lm
from zoo.rl.grpo_envs import retrieval as rt
from zoo.rl.grpo_envs import reverse as rv
from zoo.rl.grpo_envs import skillmix as sm

from ._row import rows

_key = jax.random.PRNGKey(0)
_nan = np.nan

# ---------------------------------------------------------------------------------------------- grouprank

_s = np.array([[0.3, 0.1, 0.7]])
_g = np.array([[1, 0, 3]])
_s_nan = np.array([[0.3, _nan, 0.7]])
_SC = gr.ScorerConfig(kind="pointwise", dim=4, hidden=(8,))
_q = np.ones((2, 4), np.float32)
_docs = np.ones((2, 3, 4), np.float32)
_q_nan = np.where(np.eye(2, 4, dtype=bool), np.nan, 1.0).astype(np.float32)
_logits = np.zeros((2, 3, gr.N_BINS), np.float32)
_bins = np.zeros((2, 4, 3), np.int32)

_GR = [
    *rows("zoo.rl.grouprank.split_groups",
          ("out of range", lambda: gr.split_groups(5, 3, 4), "interval"),
          ("group larger than list", lambda: gr.split_groups(5, 6, 2), "group_size"),
          ("wrong type", lambda: gr.split_groups(5.5, 3, 1), "n_candidates")),
    *rows("zoo.rl.grouprank.shuffle_candidates",
          ("wrong dtype", lambda: gr.shuffle_candidates(_key, np.zeros((2, 3))), "idx"),
          ("wrong shape", lambda: gr.shuffle_candidates(_key, np.arange(3)), "idx")),
    *rows("zoo.rl.ranking.ndcg_at_k",
          ("NaN", lambda: gr.ndcg_at_k(_s_nan, _g, 2), "scores"),
          ("out of range", lambda: gr.ndcg_at_k(_s, _g, 0), "k"),
          ("wrong shape", lambda: gr.ndcg_at_k(_s, _g[:, :2], 2), "gains")),
    *rows("zoo.rl.ranking.recall_at_k",
          ("NaN", lambda: gr.recall_at_k(_s_nan, _g > 0, 2), "scores"),
          ("wrong shape", lambda: gr.recall_at_k(_s, np.ones((2, 3), bool), 2), "relevant")),
    *rows("zoo.rl.grouprank.distribution_reward",
          ("NaN", lambda: gr.distribution_reward(_s_nan, _s), "scores01"),
          ("out of range", lambda: gr.distribution_reward(_s, _s, kind="js", tau=0.0), "tau"),
          ("wrong shape", lambda: gr.distribution_reward(_s, _s, valid=np.ones((1, 2), bool)), "valid"),
          ("bad choice", lambda: gr.distribution_reward(_s, _s, kind="kl"), "kind")),
    *rows("zoo.rl.grouprank.grouprank_reward",
          ("out of range", lambda: gr.grouprank_reward(np.array([[1, 2, 3]]), np.array([[0, 4, 1]])), "grades"),
          ("out of range", lambda: gr.grouprank_reward(np.array([[1, 11, 3]]), _g), "score_bins"),
          ("negative", lambda: gr.grouprank_reward(np.array([[1, 2, 3]]), _g, weights=np.array([1.0, -1, 0])),
           "weights"),
          ("wrong shape", lambda: gr.grouprank_reward(np.array([[1, 2, 3]]), _g, format_ok=np.ones((2, 2), bool)),
           "format_ok"),
          ("wrong shape", lambda: gr.grouprank_reward(np.array([[1, 2, 3]]), _g, valid=np.ones((1, 2), bool)),
           "valid")),
    *rows("zoo.rl.grouprank.full_list_ndcg",
          ("NaN", lambda: gr.full_list_ndcg(_s_nan, _g), "scores"),
          ("wrong shape", lambda: gr.full_list_ndcg(_s, _g[0]), "grades")),
    *rows("zoo.rl.grouprank.pointwise_features",
          ("wrong shape", lambda: gr.pointwise_features(_q, _docs[:1]), "docs"),
          ("NaN", lambda: gr.pointwise_features(_q_nan, _docs), "q")),
    *rows("zoo.rl.grouprank.groupwise_features",
          ("wrong shape", lambda: gr.groupwise_features(_q, _docs, np.ones((2, 2), bool)), "valid"),
          ("wrong shape", lambda: gr.groupwise_features(_q, _docs[0]), "docs")),
    *rows("zoo.rl.grouprank.init_scorer",
          ("wrong type", lambda: gr.init_scorer(_key, {"kind": "pointwise"}), "cfg"),
          ("out of range", lambda: gr.init_scorer(_key, _SC, 0), "group_size")),
    *rows("zoo.rl.grouprank.pointwise_logits",
          ("wrong shape", lambda: gr.pointwise_logits(None, np.ones((2, 5)), np.ones((2, 3, 5)), cfg=_SC), "q"),
          ("wrong type", lambda: gr.pointwise_logits(None, _q, _docs, cfg="pointwise"), "cfg")),
    *rows("zoo.rl.grouprank.groupwise_logits",
          ("NaN", lambda: gr.groupwise_logits(None, _q_nan, _docs, cfg=_SC), "q")),
    *rows("zoo.rl.grouprank.attention_logits",
          ("wrong type", lambda: gr.attention_logits(None, _q, _docs, cfg=None), "cfg"),
          ("wrong shape", lambda: gr.attention_logits(None, _q, _docs, np.ones(3, bool), cfg=_SC), "valid")),
    *rows("zoo.rl.grouprank.scorer_logits",
          ("NaN", lambda: gr.scorer_logits(None, _q_nan, _docs, cfg=_SC), "q"),
          ("wrong type", lambda: gr.scorer_logits(None, _q, _docs, cfg=3), "cfg")),
    *rows("zoo.rl.grouprank.sample_scores",
          ("wrong shape", lambda: gr.sample_scores(_key, _logits[..., :5], 4), "logits"),
          ("NaN", lambda: gr.sample_scores(_key, np.full_like(_logits, _nan), 4), "logits"),
          ("out of range", lambda: gr.sample_scores(_key, _logits, 1), "group")),
    *rows("zoo.rl.grouprank.score_logprobs",
          ("out of range", lambda: gr.score_logprobs(_logits, _bins + 11), "bins"),
          ("wrong shape", lambda: gr.score_logprobs(_logits, _bins[:, :, :2]), "bins")),
    *rows("zoo.rl.grouprank.grouprank_loss",
          ("missing key", lambda: gr.grouprank_loss(None, {"q": _q}, scorer=_SC), "batch"),
          ("wrong shape", lambda: gr.grouprank_loss(
              None, {"q": _q, "docs": _docs, "valid": np.ones((2, 3), bool), "bins": _bins, "adv": np.zeros((2, 3))},
              scorer=_SC), "adv")),
    *rows("zoo.rl.grouprank.rerank",
          ("NaN", lambda: gr.rerank(None, _key, _q_nan, _docs, scorer=_SC, group_size=2, interval=2, repeats=1), "q"),
          ("out of range", lambda: gr.rerank(None, _key, _q, _docs, scorer=_SC, group_size=2, interval=2, repeats=1,
                                             interp=2.0), "interp"),
          ("out of range", lambda: gr.rerank(None, _key, _q, _docs, scorer=_SC, group_size=4, interval=2, repeats=1),
           "group_size")),
    *rows("zoo.rl.grouprank.parse_group_output",
          ("wrong type", lambda: gr.parse_group_output(b"{}", 2), "text", TypeError),
          ("out of range", lambda: gr.parse_group_output("{}", 0), "m")),
    *rows("zoo.rl.grouprank.group_scores_from_text",
          ("wrong type", lambda: gr.group_scores_from_text(None, 2), "text", TypeError),
          ("wrong type", lambda: gr.group_scores_from_text("{}", 2.0), "m")),
]

# ---------------------------------------------------------------------------------------------- rlccf

_ans = np.array([[[0, 1, 1], [2, -1, 2]], [[1, 1, 0], [2, 2, 2]]], np.int32)  # N=2, Q=2, K=3
_counts = np.asarray(rc.answer_counts(_ans, n_answers=3))
_sc = np.full((2, 2), 0.5)
_gold = np.array([1, 2], np.int32)
_RCFG = rc.RLCCFConfig(k=3, n_answers=3)
_LM = tiny_lm.TinyLMConfig(vocab=8, d_model=8)
_prompts = np.ones((2, 4), np.int32)


def _extract(tokens, mask):
    return tokens[:, 0]


_RC = [
    *rows("zoo.rl.rlccf.answer_counts",
          ("out of range", lambda: rc.answer_counts(_ans, n_answers=2), "answers"),
          ("out of range", lambda: rc.answer_counts(_ans, n_answers=0), "n_answers"),
          ("wrong dtype", lambda: rc.answer_counts(_ans.astype(float), n_answers=3), "answers")),
    *rows("zoo.rl.rlccf.self_consistency",
          ("out of range", lambda: rc.self_consistency(_counts, 1), "k"),
          ("negative", lambda: rc.self_consistency(-_counts, 3), "counts")),
    *rows("zoo.rl.rlccf.collective_vote",
          ("negative", lambda: rc.collective_vote(_counts, -_sc), "sc"),
          ("NaN", lambda: rc.collective_vote(_counts, np.full((2, 2), _nan)), "sc"),
          ("missing", lambda: rc.collective_vote(_counts), "sc"),
          ("wrong shape", lambda: rc.collective_vote(_counts, _sc[:1]), "sc")),
    *rows("zoo.rl.rlccf.ttrl_labels",
          ("wrong shape", lambda: rc.ttrl_labels(_counts[0]), "counts"),
          ("NaN", lambda: rc.ttrl_labels(np.full((1, 1, 3), _nan)), "counts")),
    *rows("zoo.rl.rlccf.consistency_rewards",
          ("wrong shape", lambda: rc.consistency_rewards(_ans, np.zeros(3, np.int32)), "labels"),
          ("wrong dtype", lambda: rc.consistency_rewards(_ans, np.zeros(2)), "labels")),
    *rows("zoo.rl.rlccf.rlccf_advantages",
          ("NaN", lambda: rc.rlccf_advantages(np.full((2, 2, 3), _nan)), "rewards"),
          ("wrong shape", lambda: rc.rlccf_advantages(np.zeros((2, 3))), "rewards")),
    *rows("zoo.rl.rlccf.pseudo_labels",
          ("bad choice", lambda: rc.pseudo_labels(_ans, n_answers=3, mode="gold"), "mode"),
          ("out of range", lambda: rc.pseudo_labels(_ans, n_answers=3, k=1), "k")),
    *rows("zoo.rl.rlccf.label_accuracy",
          ("wrong shape", lambda: rc.label_accuracy(_gold, np.zeros(3, np.int32)), "gold")),
    *rows("zoo.rl.rlccf.reward_accuracy",
          ("wrong shape", lambda: rc.reward_accuracy(_ans, _gold, _gold[:1]), "gold")),
    *rows("zoo.rl.rlccf.avg_accuracy",
          ("wrong shape", lambda: rc.avg_accuracy(_ans[0], _gold), "answers")),
    *rows("zoo.rl.rlccf.group_majority_accuracy",
          ("out of range", lambda: rc.group_majority_accuracy(_ans, np.array([1, 5], np.int32), n_answers=3), "gold")),
    *rows("zoo.rl.rlccf.init_rlccf_state",
          ("not stacked", lambda: rc.init_rlccf_state({"w": np.zeros((2, 3)), "b": np.zeros(3)}, _RCFG), "params"),
          ("wrong type", lambda: rc.init_rlccf_state({"w": np.zeros((2, 3))}, {"k": 3}), "cfg")),
    *rows("zoo.rl.rlccf.sample_answers",
          ("wrong type", lambda: rc.sample_answers(None, _key, _prompts, cfg=_LM, lm_cfg=_LM, extract=_extract), "cfg"),
          ("wrong dtype", lambda: rc.sample_answers(None, _key, _prompts * 1.0, cfg=_RCFG, lm_cfg=_LM,
                                                    extract=_extract), "prompts"),
          ("not callable", lambda: rc.sample_answers(None, _key, _prompts, cfg=_RCFG, lm_cfg=_LM, extract=3),
           "extract")),
    *rows("zoo.rl.rlccf.model_loss",
          ("wrong shape", lambda: rc.model_loss(None, None, _prompts, None, np.zeros((2, 4)), cfg=_RCFG, lm_cfg=_LM),
           "adv"),
          ("wrong type", lambda: rc.model_loss(None, None, _prompts, None, np.zeros((2, 3)), cfg=_RCFG, lm_cfg=None),
           "lm_cfg")),
    *rows("zoo.rl.rlccf.rlccf_loss",
          ("wrong shape", lambda: rc.rlccf_loss({"w": np.zeros((2, 1))}, None, _prompts, None, np.zeros((2, 3)),
                                                cfg=_RCFG, lm_cfg=_LM), "adv")),
    *rows("zoo.rl.rlccf.rlccf_step",
          ("wrong type", lambda: rc.rlccf_step({"w": 1}, _key, _prompts, cfg=_RCFG, lm_cfg=_LM, extract=_extract),
           "state"),
          ("wrong dtype", lambda: rc.rlccf_step(rc.RLCCFState({}, {}, {}), _key, _prompts * 0.5, cfg=_RCFG, lm_cfg=_LM,
                                                extract=_extract), "prompts"),
          ("out of range", lambda: rc.rlccf_step(rc.RLCCFState({}, {}, {}), _key, _prompts, cfg=_RCFG, lm_cfg=_LM,
                                                 extract=_extract, mode=3), "mode")),
]

# ---------------------------------------------------------------------------------------------- envs

_ENV = [
    *rows("zoo.rl.grpo_envs.retrieval.generate",
          ("out of range", lambda: rt.generate(0, 0), "n"),
          ("wrong type", lambda: rt.generate(0, 2, {"dim": 4}), "cfg")),
    *rows("zoo.rl.grpo_envs.retrieval.grade_of",
          ("NaN", lambda: rt.grade_of(np.array([0.2, _nan])), "a"),
          ("wrong type", lambda: rt.grade_of(np.array(["a"])), "a")),
    *rows("zoo.rl.grpo_envs.retrieval.make_dataset",
          ("wrong type", lambda: rt.make_dataset(0, 2, "small"), "cfg"),
          ("out of range", lambda: rt.make_dataset(0, -1), "n")),
    *rows("zoo.rl.grpo_envs.retrieval.reward",
          ("NaN", lambda: rt.reward(_s_nan, _g), "scores"),
          ("out of range", lambda: rt.reward(_s, _g, 0), "k")),
    *rows("zoo.rl.grpo_envs.reverse.generate",
          ("out of range", lambda: rv.generate(0, 0), "n"),
          ("wrong type", lambda: rv.generate(0, 2, None), "cfg")),
    *rows("zoo.rl.grpo_envs.reverse.make_dataset",
          ("out of range", lambda: rv.make_dataset(0, 0), "n")),
    *rows("zoo.rl.grpo_envs.reverse.reverse_reward",
          ("wrong shape", lambda: rv.reverse_reward(np.ones((2, 4), np.int32), np.ones((2, 5), np.int32),
                                                    np.ones((2, 5), bool)), "prompt"),
          ("wrong dtype", lambda: rv.reverse_reward(np.ones((2, 5), np.int32), np.ones((2, 5)), np.ones((2, 5), bool)),
           "completion")),
    *rows("zoo.rl.grpo_envs.reverse.sample_batch",
          ("out of range", lambda: rv.sample_batch(_key, 0), "n"),
          ("wrong type", lambda: rv.sample_batch(_key, 2, {"length": 3}), "cfg")),
    *rows("zoo.rl.grpo_envs.reverse.vocab_size",
          ("wrong type", lambda: rv.vocab_size(5), "cfg")),
    *rows("zoo.rl.grpo_envs.skillmix.exact_match",
          ("wrong dtype", lambda: sm.exact_match(np.ones((2, 3)), np.ones(2, np.int32)), "answers"),
          ("wrong shape", lambda: sm.exact_match(np.ones((2, 3), np.int32), np.ones(2, np.int32)), "gold")),
    *rows("zoo.rl.grpo_envs.skillmix.extract_answers",
          ("wrong dtype", lambda: sm.extract_answers(np.ones((2, 2))), "tokens"),
          ("wrong shape", lambda: sm.extract_answers(np.ones((2, 2), np.int32), np.ones((2, 3), bool)), "mask")),
    *rows("zoo.rl.grpo_envs.skillmix.generate",
          ("out of range", lambda: sm.generate(0, 0), "n"),
          ("wrong type", lambda: sm.generate(0, 4, "weak"), "cfg")),
    *rows("zoo.rl.grpo_envs.skillmix.gold_answer",
          ("out of range", lambda: sm.gold_answer(np.array([0]), np.array([10]), np.array([1])), "x"),
          ("wrong dtype", lambda: sm.gold_answer(np.array([0.5]), np.array([1]), np.array([1])), "types")),
    *rows("zoo.rl.grpo_envs.skillmix.make_dataset",
          ("out of range", lambda: sm.make_dataset(0, 0), "n")),
    *rows("zoo.rl.grpo_envs.skillmix.misconception",
          ("out of range", lambda: sm.misconception(np.array([0]), np.array([1]), np.array([-1])), "y")),
    *rows("zoo.rl.grpo_envs.skillmix.prompt_tokens",
          ("wrong shape", lambda: sm.prompt_tokens(np.array([0, 1]), np.array([1]), np.array([1, 2])), "x, y")),
    *rows("zoo.rl.grpo_envs.skillmix.target_distribution",
          ("out of range", lambda: sm.target_distribution(np.array([0]), np.array([1]), np.array([1]), 4),
           "strong_type"),
          ("wrong shape", lambda: sm.target_distribution(np.array(0), np.array(1), np.array(1), 0), "types")),
]

# ---------------------------------------------------------------------------------------------- geometric

_pos = np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32)
_pos_nan = np.where(np.eye(3, dtype=bool), np.nan, _pos)
_snd = np.array([0, 1, 2], np.int32)
_rcv = np.array([1, 2, 0], np.int32)
_bad = np.array([0, 1, 3], np.int32)  # 3 is out of range for 3 nodes
_VEC = P.PonitaConfig(in_scalar=1, out_scalar=1, hidden_dim=4, basis_dim=4, num_layers=1, num_ori=4)
_EN = P.PonitaConfig(in_scalar=1, out_scalar=1, hidden_dim=4, basis_dim=4, num_layers=1, num_ori=4, task_level="graph")
_grid = np.asarray(P.make_grid(_VEC))
_graph = gg.batch_complete(_pos[None], np.ones((1, 3, 1), np.float32))
_pp = {"consts": {"grid": _grid}}  # enough for the boundary checks
_nb = {"pos": _pos[None], "vel": _pos[None], "charges": np.ones((1, 3, 1)), "target": _pos[None]}
_md = {"pos": _pos[None], "forces": _pos[None], "species": np.ones((1, 3, 2)), "energy": np.zeros(1)}
_x = np.ones((3, 4, 2))
_ks = np.ones((3, 4, 2))
_em = np.ones(3, bool)
_EG = eg.EGNNConfig(hidden_dim=4, num_layers=1)


def _egnn_apply(x=_pos, senders=_snd, cfg=_EG):
    return eg.apply(None, cfg, np.ones((3, 1)), x, _pos, np.ones((3, 2)), senders, _rcv)


_GEO = [
    *rows("zoo.geometric.graph.batch_complete",
          ("wrong shape", lambda: gg.batch_complete(_pos), "pos"),
          ("wrong shape", lambda: gg.batch_complete(_pos[None], np.ones((1, 2, 1))), "scalars")),
    *rows("zoo.geometric.graph.fully_connected_edges",
          ("out of range", lambda: gg.fully_connected_edges(-1), "n")),
    *rows("zoo.geometric.graph.graph_sum",
          ("wrong type", lambda: gg.graph_sum(_pos, {"pos": _pos}), "g"),
          ("wrong shape", lambda: gg.graph_sum(np.ones((4, 1)), _graph), "x")),
    *rows("zoo.geometric.graph.pad_graphs",
          ("empty", lambda: gg.pad_graphs([], 4, 4), "graphs"),
          ("out of range", lambda: gg.pad_graphs([{"pos": _pos, "senders": _snd, "receivers": _rcv}], 2, 4), "n_pad"),
          ("NaN", lambda: gg.pad_graphs([{"pos": _pos_nan, "senders": _snd, "receivers": _rcv}], 4, 4), "pos")),
    *rows("zoo.geometric.graph.radius_graph",
          ("out of range", lambda: gg.radius_graph(_pos, -1.0, 4), "radius"),
          ("NaN", lambda: gg.radius_graph(_pos_nan, 1.0, 4), "pos"),
          ("out of range", lambda: gg.radius_graph(_pos, 1.0, 0), "max_edges")),
    *rows("zoo.geometric.graph.segment_sum",
          ("out of range", lambda: gg.segment_sum(np.ones((3, 2)), _bad, 3), "segment_ids"),
          ("wrong shape", lambda: gg.segment_sum(np.ones((4, 2)), _snd, 3), "segment_ids"),
          ("wrong shape", lambda: gg.segment_sum(np.ones((3, 2)), _snd, 3, np.ones(2, bool)), "mask")),
    *rows("zoo.geometric.graph.validate_graph",
          ("wrong type", lambda: gg.validate_graph((_pos, _snd)), "g"),
          ("out of range", lambda: gg.validate_graph(_graph._replace(senders=_graph.senders + 1)), "senders")),
    # EGNN
    *rows("zoo.geometric.egnn.apply",
          ("out of range", lambda: _egnn_apply(senders=_bad), "senders"),
          ("NaN", lambda: _egnn_apply(x=_pos_nan), "x"),
          ("wrong type", lambda: _egnn_apply(cfg=_VEC), "cfg")),
    *rows("zoo.geometric.egnn.init",
          ("wrong type", lambda: eg.init(_key, _VEC), "cfg"),
          ("wrong dtype", lambda: eg.init(_key, _EG, dtype=np.int32), "dtype")),
    *rows("zoo.geometric.egnn.nbody_loss",
          ("missing key", lambda: eg.nbody_loss(None, _EG, {k: v for k, v in _nb.items() if k != "target"}), "batch"),
          ("wrong shape", lambda: eg.nbody_loss(None, _EG, {**_nb, "target": _pos[None, :, :1]}), "target")),
    *rows("zoo.geometric.egnn.nbody_predict",
          ("missing key", lambda: eg.nbody_predict(None, _EG, {"pos": _pos[None]}), "batch"),
          ("NaN", lambda: eg.nbody_predict(None, _EG, {**_nb, "pos": _pos_nan[None]}), "pos")),
    # PONITA
    *rows("zoo.geometric.ponita.apply",
          ("wrong type", lambda: P.apply(_pp, _EG, _graph), "cfg"),
          ("NaN", lambda: P.apply(_pp, _VEC, _graph._replace(pos=_pos_nan)), "pos"),
          ("wrong type", lambda: P.apply({"w": 1}, _VEC, _graph), "params")),
    *rows("zoo.geometric.ponita.calibrate",
          ("wrong type", lambda: P.calibrate(_pp, None, _graph), "cfg"),
          ("out of range", lambda: P.calibrate(_pp, _VEC, _graph._replace(receivers=_graph.receivers - 1)),
           "receivers")),
    *rows("zoo.geometric.ponita.energy_forces",
          ("wrong config", lambda: P.energy_forces(_pp, _VEC, _graph), "cfg"),
          ("wrong type", lambda: P.energy_forces(_pp, "energy", _graph), "cfg")),
    *rows("zoo.geometric.ponita.energy_forces_averaged",
          ("wrong shape", lambda: P.energy_forces_averaged(_pp, _EN, _graph, np.eye(3)), "rotations"),
          ("empty", lambda: P.energy_forces_averaged(_pp, _EN, _graph, np.zeros((0, 3, 3))), "rotations")),
    *rows("zoo.geometric.ponita.fiber_mix",
          ("wrong shape", lambda: P.fiber_mix(_x, np.ones((3, 3, 2))), "k_fiber"),
          ("NaN", lambda: P.fiber_mix(np.full_like(_x, _nan), np.ones((4, 4, 2))), "g")),
    *rows("zoo.geometric.ponita.init",
          ("wrong type", lambda: P.init(_key, _EG), "cfg"),
          ("wrong dtype", lambda: P.init(_key, _VEC, dtype=np.int32), "dtype")),
    *rows("zoo.geometric.ponita.invariants",
          ("out of range", lambda: P.invariants(_pos, _grid, _bad, _rcv), "senders"),
          ("wrong shape", lambda: P.invariants(_pos, _grid[:, :2], _snd, _rcv), "grid"),
          ("NaN", lambda: P.invariants(_pos_nan, _grid, _snd, _rcv), "pos"),
          ("wrong shape", lambda: P.invariants(_pos, _grid, _snd, _rcv[:2]), "receivers")),
    *rows("zoo.geometric.ponita.invariants_pointcloud",
          ("wrong shape", lambda: P.invariants_pointcloud(_pos, _grid, _snd, _rcv), "ori"),
          ("out of range", lambda: P.invariants_pointcloud(_pos, _pos, _snd, _bad), "receivers")),
    *rows("zoo.geometric.ponita.invariants_se3",
          ("wrong shape", lambda: P.invariants_se3(_pos, np.ones((3, 2, 2)), _snd, _rcv), "rot"),
          ("out of range", lambda: P.invariants_se3(_pos, np.ones((3, 3, 3)), _bad, _rcv), "senders")),
    *rows("zoo.geometric.ponita.kernel_bases",
          ("wrong type", lambda: P.kernel_bases(_pp, {"num_ori": 4}, _graph), "cfg"),
          ("wrong shape", lambda: P.kernel_bases(_pp, _VEC, _graph._replace(pos=_graph.pos[:, :2])), "pos")),
    *rows("zoo.geometric.ponita.make_grid",
          ("wrong type", lambda: P.make_grid(4), "cfg"),
          ("wrong dtype", lambda: P.make_grid(_VEC, dtype=np.int32), "dtype")),
    *rows("zoo.geometric.ponita.make_optimizer",
          ("out of range", lambda: P.make_optimizer(1e-3, clip_norm=0.0), "clip_norm"),
          ("out of range", lambda: P.make_optimizer(1e-3, weight_decay=-1.0), "weight_decay"),
          ("out of range", lambda: P.make_optimizer(-1e-3), "learning_rate"),
          ("NaN", lambda: P.make_optimizer(_nan), "learning_rate")),
    *rows("zoo.geometric.ponita.md_loss",
          ("out of range", lambda: P.md_loss(_pp, _EN, _md, lambda_f=0.0), "lambda_f"),
          ("out of range", lambda: P.md_loss(_pp, _EN, _md, scale=-1.0), "scale"),
          ("missing key", lambda: P.md_loss(_pp, _EN, {"pos": _pos[None]}), "batch")),
    *rows("zoo.geometric.ponita.nbody_graph",
          ("missing key", lambda: P.nbody_graph({"pos": _pos[None], "vel": _pos[None]}), "batch"),
          ("wrong shape", lambda: P.nbody_graph({**_nb, "vel": _pos}), "vel")),
    *rows("zoo.geometric.ponita.nbody_loss",
          ("wrong shape", lambda: P.nbody_loss(_pp, _VEC, {**_nb, "target": _pos[None, :2]}), "target"),
          ("NaN", lambda: P.nbody_loss(_pp, _VEC, {**_nb, "vel": _pos_nan[None]}), "vel")),
    *rows("zoo.geometric.ponita.nbody_predict",
          ("wrong type", lambda: P.nbody_predict(_pp, _EG, _nb), "cfg"),
          ("wrong shape", lambda: P.nbody_predict(_pp, _VEC, {**_nb, "pos": _pos[None, :, :2]}), "pos")),
    *rows("zoo.geometric.ponita.polynomial_cutoff",
          ("out of range", lambda: P.polynomial_cutoff(_pos, 0.0), "r_max"),
          ("out of range", lambda: P.polynomial_cutoff(_pos, -2.0), "r_max"),
          ("NaN", lambda: P.polynomial_cutoff(_pos, _nan), "r_max"),
          ("out of range", lambda: P.polynomial_cutoff(_pos, 1.0, p=0), "p")),
    *rows("zoo.geometric.ponita.polynomial_features",
          ("out of range", lambda: P.polynomial_features(_pos, 0), "degree"),
          ("wrong shape", lambda: P.polynomial_features(np.float32(1.0), 2), "a")),
    *rows("zoo.geometric.ponita.random_rotation",
          ("out of range", lambda: P.random_rotation(_key, dim=4), "dim"),
          ("wrong dtype", lambda: P.random_rotation(_key, 3, np.int32), "dtype")),
    *rows("zoo.geometric.ponita.rotation_averaged",
          ("out of range", lambda: P.rotation_averaged(_pp, _VEC, _graph, _key, repeats=0), "repeats"),
          ("wrong type", lambda: P.rotation_averaged(_pp, _EG, _graph, _key), "cfg")),
    *rows("zoo.geometric.ponita.separable_conv",
          ("out of range", lambda: P.separable_conv(_x, _ks, None, _bad, _rcv, _em), "senders"),
          ("wrong shape", lambda: P.separable_conv(_x, _ks, None, _snd, _rcv, _em, bias=np.ones(3)), "bias"),
          ("NaN", lambda: P.separable_conv(np.full_like(_x, _nan), _ks, None, _snd, _rcv, _em), "x")),
    *rows("zoo.geometric.ponita.spatial_conv",
          ("wrong shape", lambda: P.spatial_conv(_x, _ks[:, :, :1], _snd, _rcv, _em), "k_spatial"),
          ("out of range", lambda: P.spatial_conv(_x, _ks, _snd, _bad, _em), "receivers"),
          ("wrong dtype", lambda: P.spatial_conv(_x, _ks, _snd, _rcv, np.ones(3)), "edge_mask")),
]

ROWS = _GR + _RC + _ENV + _GEO

EXEMPT = {"zoo.rl.grpo_envs.skillmix.all_questions": "takes no arguments"}
