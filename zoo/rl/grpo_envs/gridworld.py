"""Gridworld tasks for GiGPO (spec ``papers/gigpo.md`` §3): GridGoal and KeyDoor, pure JAX.

Many identical states recur across the N trajectories started from the same task, which is what
GiGPO's anchor-state grouping needs. Everything here is a pure function of arrays, so a multi-turn
rollout is one ``lax.scan`` over steps and a whole population of tasks is one ``vmap``/broadcast.

Actions (the environment's action index ``a``; the tiny LM emits token ``action_token(a)``):

    0 = up (row − 1), 1 = down (row + 1), 2 = left (col − 1), 3 = right (col + 1)
    4 .. 4 + n_junk_tokens − 1 = junk: no move, ``invalid = True``

Moves off the grid leave the position unchanged (a *valid* action). GridGoal: reward 1 when the
agent enters the goal cell, then ``done`` latches. KeyDoor: the key is picked up automatically on
entering its cell; reward 1 on entering the door cell while holding the key. After ``done`` every
step is a no-op with reward 0 and ``invalid = False``. The horizon is the rollout length (the
caller scans ``cfg.horizon`` steps); the state does not count steps, by design: the anchor must
not contain a step counter (spec pitfall).

Observation = anchor = the raw state features (``F = 4``: pos, goal; KeyDoor ``F = 7``: pos, key,
door, has_key). ``observe`` maps feature j with value v to the LM token ``feature_base + j·size + v``.

Token layout (vocabulary of the policy LM): 0 = PAD, 1 = EOS, 2 .. 2 + n_actions − 1 = actions,
then the feature tokens. ``vocab_size(cfg)`` gives the total (28 for GridGoal 5×5 with 2 junk tokens).

Our choices (not in the paper): the exact token layout above; ``reset`` draws tasks uniformly with
all special cells distinct; ``expert_action`` (shortest-path move, used for noisy SFT demos at
``paper`` size) is a greedy Manhattan policy, optimal because there are no walls.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range, is_traced

PAD_ID = 0
EOS_ID = 1
ACTION_BASE = 2
N_MOVES = 4
_DELTAS = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], np.int32)  # up, down, left, right


@dataclasses.dataclass(frozen=True, kw_only=True)
class GridConfig:
    """A gridworld task family. ``size``: side W; ``horizon``: steps per episode."""

    size: int = 5
    horizon: int = 12
    key_door: bool = False
    n_junk_tokens: int = 2

    def __post_init__(self):
        check_range("size", self.size, low=2, high=64)
        check_range("horizon", self.horizon, low=1, high=1000)
        check_range("n_junk_tokens", self.n_junk_tokens, low=0, high=16)
        if not isinstance(self.key_door, bool):
            raise ValueError(f"key_door: expected a bool, got {self.key_door!r}")
        if self.key_door and self.size * self.size < 3:  # pragma: no cover - size >= 2 gives 4 cells
            raise ValueError(f"size: KeyDoor needs >= 3 cells, got size={self.size}")

    @property
    def n_actions(self) -> int:
        return N_MOVES + self.n_junk_tokens

    @property
    def n_features(self) -> int:
        return 7 if self.key_door else 4

    @property
    def feature_base(self) -> int:
        return ACTION_BASE + self.n_actions


def _check_cfg(cfg):
    if not isinstance(cfg, GridConfig):
        raise ValueError(f"cfg: expected a GridConfig, got {type(cfg).__name__}")


def _check_state(state):
    if not isinstance(state, EnvState):
        raise ValueError(f"state: expected an EnvState (from reset / from_cells), got {type(state).__name__}")


def _check_actions(action, high=None):
    check_array("action", action, kind="iu")
    if not is_traced(action):
        a = np.asarray(action)
        if a.size and (a.min() < 0 or (high is not None and a.max() >= high)):
            want = f"[0, {high})" if high is not None else ">= 0"
            raise ValueError(f"action: expected action indices in {want}, got range [{a.min()}, {a.max()}]")


def vocab_size(cfg: GridConfig) -> int:
    """Vocabulary size of the policy LM for this task (PAD, EOS, actions, feature tokens)."""
    _check_cfg(cfg)
    return cfg.feature_base + cfg.n_features * cfg.size


def action_token(action: jax.Array) -> jax.Array:
    """Environment action index (int, >= 0) -> LM token id."""
    _check_actions(action)
    return jnp.asarray(action, jnp.int32) + ACTION_BASE


def action_tokens(cfg: GridConfig) -> np.ndarray:
    """``i32[n_actions]``: the LM token ids the policy may emit (its logits are masked to these)."""
    _check_cfg(cfg)
    return np.arange(cfg.n_actions, dtype=np.int32) + ACTION_BASE


class EnvState(NamedTuple):
    """Batched state; leaves share the leading batch shape ``[...]``.

    pos, goal: i32[..., 2] (row, col); for KeyDoor ``goal`` is the door and ``key`` the key cell;
    has_key, done: bool[...].
    """

    pos: jax.Array
    goal: jax.Array
    key: jax.Array
    has_key: jax.Array
    done: jax.Array


def _distinct_cells(key: jax.Array, size: int, k: int, n: int) -> jax.Array:
    """``i32[n, k, 2]``: k distinct cells per task, uniformly at random."""
    keys = jax.random.split(key, n)
    idx = jax.vmap(lambda kk: jax.random.choice(kk, size * size, (k,), replace=False))(keys)
    return jnp.stack([idx // size, idx % size], axis=-1).astype(jnp.int32)


def reset(key: jax.Array, cfg: GridConfig, n: int) -> EnvState:
    """``n`` independent tasks: GridGoal (start ≠ goal) or KeyDoor (start, key, door distinct)."""
    _check_cfg(cfg)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    cells = _distinct_cells(key, cfg.size, 3 if cfg.key_door else 2, int(n))
    pos, goal = cells[:, 0], cells[:, -1]
    kpos = cells[:, 1] if cfg.key_door else jnp.full_like(pos, -1)
    false = jnp.zeros((n,), bool)
    return EnvState(pos=pos, goal=goal, key=kpos, has_key=false, done=false)


def from_cells(cfg: GridConfig, pos, goal, key=None) -> EnvState:
    """Build a state from explicit cells (``i32[..., 2]`` each, inside the grid); tests and held-out task sets."""
    _check_cfg(cfg)
    for name, c in (("pos", pos), ("goal", goal), ("key", key)):
        if c is None:
            continue
        check_array(name, c, kind="iu")
        if not is_traced(c):
            v = np.asarray(c)
            if v.size and (v.min() < 0 or v.max() >= cfg.size):
                raise ValueError(f"{name}: expected cells inside the grid, coordinates in [0, {cfg.size}), "
                                 f"got range [{v.min()}, {v.max()}]")
    pos = jnp.asarray(pos, jnp.int32)
    goal = jnp.asarray(goal, jnp.int32)
    if cfg.key_door and key is None:
        raise ValueError("key: KeyDoor states need the key cell")
    kpos = jnp.full_like(pos, -1) if key is None else jnp.asarray(key, jnp.int32)
    for name, c in (("pos", pos), ("goal", goal), ("key", kpos)):
        if c.shape[-1:] != (2,):
            raise ValueError(f"{name}: expected shape (..., 2), got {tuple(c.shape)}")
    false = jnp.zeros(pos.shape[:-1], bool)
    return EnvState(pos=pos, goal=goal, key=kpos, has_key=false, done=false)


def replicate(state: EnvState, n: int) -> EnvState:
    """Each task repeated ``n`` times on a new axis: leaves ``[B, ...] -> [B, n, ...]`` (one group per task)."""
    _check_state(state)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    if state.pos.ndim < 2:
        raise ValueError(f"state: expected a batch of tasks (pos i32[B, 2]), got pos shape {tuple(state.pos.shape)}")
    return jax.tree.map(lambda x: jnp.repeat(x[:, None], n, axis=1), state)


def step(state: EnvState, action: jax.Array, *, cfg: GridConfig):
    """One environment step for every task in the batch.

    Args:
      state: batched ``EnvState`` with leading shape ``[...]``.
      action: i32[...] environment action indices in ``[0, cfg.n_actions)``.

    Returns:
      ``(state', reward f32[...], done' bool[...], invalid bool[...])`` (reward in JAX's default float).
    """
    _check_state(state)
    _check_cfg(cfg)
    _check_actions(action, cfg.n_actions)
    action = jnp.asarray(action, jnp.int32)
    active = ~state.done
    is_move = action < N_MOVES
    delta = jnp.asarray(_DELTAS)[jnp.clip(action, 0, N_MOVES - 1)]
    new = jnp.clip(state.pos + delta, 0, cfg.size - 1)
    moved = (active & is_move)[..., None]
    pos = jnp.where(moved, new, state.pos)
    at = lambda c: jnp.all(pos == c, axis=-1)  # noqa: E731
    if cfg.key_door:
        has_key = state.has_key | (active & at(state.key))
        success = active & has_key & at(state.goal)
    else:
        has_key = state.has_key
        success = active & at(state.goal)
    invalid = active & ~is_move
    new_state = EnvState(pos=pos, goal=state.goal, key=state.key, has_key=has_key, done=state.done | success)
    return new_state, success.astype(jnp.result_type(float)), new_state.done, invalid


def anchor(state: EnvState, *, cfg: GridConfig) -> jax.Array:
    """``i32[..., F]`` raw state features: (pos, goal) or (pos, key, door, has_key). No history, no step count."""
    _check_state(state)
    _check_cfg(cfg)
    parts = [state.pos, state.goal] if not cfg.key_door else [state.pos, state.key, state.goal,
                                                               state.has_key[..., None].astype(jnp.int32)]
    return jnp.concatenate(parts, axis=-1).astype(jnp.int32)


def observe(state: EnvState, *, cfg: GridConfig) -> jax.Array:
    """``i32[..., F]`` prompt tokens for the policy LM: feature j with value v -> ``feature_base + j·size + v``."""
    feats = anchor(state, cfg=cfg)
    offsets = cfg.feature_base + cfg.size * jnp.arange(cfg.n_features, dtype=jnp.int32)
    return feats + offsets


def expert_action(state: EnvState, *, cfg: GridConfig) -> jax.Array:
    """i32[...]: a shortest-path move (vertical first) toward the goal, or toward the key while it is missing."""
    _check_state(state)
    _check_cfg(cfg)
    target = state.goal if not cfg.key_door else jnp.where(state.has_key[..., None], state.goal, state.key)
    d = target - state.pos
    vertical = jnp.where(d[..., 0] < 0, 0, 1)
    horizontal = jnp.where(d[..., 1] < 0, 2, 3)
    return jnp.where(d[..., 0] != 0, vertical, horizontal).astype(jnp.int32)


def random_policy_success(cfg: GridConfig, n: int = 20_000, seed: int = 0, moves_only: bool = False) -> float:
    """Monte Carlo success rate of the uniform policy over the action tokens (calibration only)."""
    _check_cfg(cfg)
    for name, v in (("n", n), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name}: expected an int, got {v!r}")
    check_range("n", n, low=1)
    return float(_random_success(jax.random.key(seed), cfg, int(n), bool(moves_only)))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _random_success(key, cfg, n, moves_only):
    k_reset, k_act = jax.random.split(key)
    acts = jax.random.randint(k_act, (cfg.horizon, n), 0, N_MOVES if moves_only else cfg.n_actions)
    final, _ = jax.lax.scan(lambda st, a: (step(st, a, cfg=cfg)[0], None), reset(k_reset, cfg, n), acts)
    return jnp.mean(final.done)
