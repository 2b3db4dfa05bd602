"""Reverse a short string: the GRPO core's sanity task (spec ``papers/_grpo_family.md`` §9).

Prompt  = [x_1, ..., x_L, SEP]              (L = ``length`` symbols, default 4)
Target  = [x_L, ..., x_1, EOS]
Reward  = 1 if the completion is exactly the target (EOS included), else 0     -> `reverse_reward`

Noisy teacher demonstrations for the SFT warm start: with probability ``noise`` one uniformly
chosen symbol of the target is replaced by a uniformly random symbol, so a policy trained on
them has a non-zero but imperfect pass rate and GRPO has something to improve.

- `generate(seed, n, cfg)`   numpy generator (dict of arrays), usable on its own
- `sample_batch(key, n, cfg)` the same distribution in pure JAX (for runs that are one jitted function)
- `make_dataset(seed, n, cfg)` the numpy arrays as a Hugging Face ``datasets.Dataset`` (imported lazily)

Token ids: PAD 0, EOS 1, SEP 2, symbols 3 .. 3 + n_symbols − 1 (``vocab_size(cfg)`` in all).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range

PAD_ID, EOS_ID, SEP_ID, FIRST_SYMBOL = 0, 1, 2, 3

__all__ = [
    "EOS_ID",
    "FIRST_SYMBOL",
    "PAD_ID",
    "SEP_ID",
    "ReverseConfig",
    "generate",
    "make_dataset",
    "reverse_reward",
    "sample_batch",
    "vocab_size",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReverseConfig:
    """n_symbols >= 2 distinct symbols; strings of ``length`` >= 1; demo ``noise`` in [0, 1]."""

    n_symbols: int = 5
    length: int = 4
    noise: float = 0.5

    def __post_init__(self):
        for name in ("n_symbols", "length"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name}: expected an int, got {v!r}")
        check_range("n_symbols", self.n_symbols, low=2)
        check_range("length", self.length, low=1)
        check_range("noise", self.noise, low=0.0, high=1.0)

    @property
    def prompt_len(self) -> int:
        return self.length + 1

    @property
    def target_len(self) -> int:
        return self.length + 1


def _check_cfg(cfg):
    if not isinstance(cfg, ReverseConfig):
        raise ValueError(f"cfg: expected a ReverseConfig, got {type(cfg).__name__}")


def _check_n(n, name="n"):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"{name}: expected an int, got {n!r}")
    check_range(name, n, low=1)


def vocab_size(cfg: ReverseConfig) -> int:
    """PAD, EOS, SEP and the ``cfg.n_symbols`` symbols."""
    _check_cfg(cfg)
    return FIRST_SYMBOL + cfg.n_symbols


def _assemble(xp, symbols, corrupt, pos, repl):
    """Prompt, target and noisy demo from symbols[n, L] (xp = numpy or jax.numpy)."""
    n, L = symbols.shape
    prompt = xp.concatenate([symbols, xp.full((n, 1), SEP_ID, symbols.dtype)], axis=1)
    rev = symbols[:, ::-1]
    eos = xp.full((n, 1), EOS_ID, symbols.dtype)
    target = xp.concatenate([rev, eos], axis=1)
    hit = corrupt[:, None] & (xp.arange(L)[None, :] == pos[:, None])
    demo = xp.concatenate([xp.where(hit, repl[:, None], rev), eos], axis=1)
    mask = xp.ones((n, L + 1), bool)
    return {"prompt": prompt, "target": target, "demo": demo, "demo_mask": mask}


def generate(seed: int, n: int, cfg: ReverseConfig = ReverseConfig()) -> dict[str, np.ndarray]:
    """n examples as numpy arrays: prompt i32[n, L+1], target i32[n, L+1] (clean),
    demo i32[n, L+1] (noisy teacher demonstration), demo_mask bool[n, L+1]."""
    _check_n(n)
    _check_cfg(cfg)
    rng = np.random.default_rng(seed)
    symbols = rng.integers(FIRST_SYMBOL, vocab_size(cfg), (n, cfg.length)).astype(np.int32)
    corrupt = rng.random(n) < cfg.noise
    pos = rng.integers(0, cfg.length, n)
    repl = rng.integers(FIRST_SYMBOL, vocab_size(cfg), n).astype(np.int32)
    return _assemble(np, symbols, corrupt, pos, repl)


def sample_batch(key: jax.Array, n: int, cfg: ReverseConfig = ReverseConfig()) -> dict[str, jax.Array]:
    """`generate`'s distribution in pure JAX (jit/vmap-able; ``n`` static)."""
    _check_n(n)
    _check_cfg(cfg)
    # one uniform draw for everything: one PRNG call site compiles far faster than four
    u = jax.random.uniform(key, (n, cfg.length + 3))
    symbols = (FIRST_SYMBOL + jnp.floor(u[:, : cfg.length] * cfg.n_symbols)).astype(jnp.int32)
    corrupt = u[:, cfg.length] < cfg.noise
    pos = jnp.minimum(jnp.floor(u[:, cfg.length + 1] * cfg.length), cfg.length - 1).astype(jnp.int32)
    repl = (FIRST_SYMBOL + jnp.floor(u[:, cfg.length + 2] * cfg.n_symbols)).astype(jnp.int32)
    symbols = jnp.minimum(symbols, vocab_size(cfg) - 1)
    repl = jnp.minimum(repl, vocab_size(cfg) - 1)
    return _assemble(jnp, symbols, corrupt, pos, repl)


def reverse_reward(prompt: jax.Array, completion: jax.Array, mask: jax.Array, *,
                   cfg: ReverseConfig = ReverseConfig()) -> jax.Array:
    """Exact match: 1.0 iff completion[:, :L+1] == [x_L..x_1, EOS] (mask covering exactly those).

    prompt i32[N, L+1]; completion i32[N, Lc] (Lc >= L+1); mask bool[N, Lc] -> f32[N].
    """
    _check_cfg(cfg)
    L = cfg.length
    check_array("prompt", prompt, ndim=2, shape=(None, L + 1), kind="iu")
    check_array("completion", completion, ndim=2, shape=(prompt.shape[0], None), kind="iu")
    if completion.shape[1] < L + 1:
        raise ValueError(f"completion: expected at least {L + 1} tokens per row, got {completion.shape[1]}")
    check_array("mask", mask, shape=tuple(completion.shape), finite=False)
    target = jnp.concatenate([jnp.asarray(prompt)[:, L - 1::-1], jnp.full((prompt.shape[0], 1), EOS_ID)], axis=1)
    comp = jnp.asarray(completion)
    ok = jnp.all(comp[:, : L + 1] == target, axis=1) & jnp.all(jnp.asarray(mask)[:, : L + 1], axis=1)
    return ok.astype(jnp.result_type(float))


def make_dataset(seed: int, n: int, cfg: ReverseConfig = ReverseConfig()):
    """`generate` as a ``datasets.Dataset`` (numpy format); needs the ``datasets`` package."""
    _check_n(n)
    _check_cfg(cfg)
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("make_dataset needs the `datasets` package (pip install datasets)") from e
    return datasets.Dataset.from_dict(generate(seed, n, cfg)).with_format("numpy")
