"""MultiColorDigits: an offline MultiColorMNIST (Lin et al., ICLR 2024, ``submit_main.py``) from bundled digits.

Spec: ``papers/bang.md`` §2.4. A digit image of side ``h`` (even) sits in the centre block of a 3x3
grid of ``h x h`` blocks (canvas ``3h x 3h``, 3 channels, the digit's value in R, G and B). Each of the
8 border blocks (order: top-left, top-middle, top-right, middle-left, middle-right, bottom-left,
bottom-middle, bottom-right) is split into 2x2 patches of ``h/2`` (row-major inside a block): 32
patches. Patch ``j`` has a colour map ``maps[j]``: a random permutation of the palette's colours,
class ``k`` -> colour ``maps[j, k]`` (`color_maps`). Per image and patch, independently, with
probability ``rho`` the patch shows ``maps[j, y]``, otherwise a colour drawn uniformly from the
palette (possibly ``maps[j, y]`` again), so ``P(colour = maps[j, y]) = rho + (1 - rho)/n_colors``
(`sample_patch_colors`). ``single_color=True`` is the control of the paper: one draw per image (from
patch 0's map) painted on all 32 patches. `render` draws the canvas; `make_multicolor` = both.

With MNIST (28x28 downsampled by 2 -> 14x14) this is the official 42x42 layout; offline we use
scikit-learn's bundled 8x8 digits (0..16 -> /16): a 24x24x3 canvas of 4x4 patches (`multicolor_digits`:
fixed split, permutation of seed 0, first 1200 images train, remaining 597 test; colours drawn with
ρ = ``id_sp`` for train and IID test, ρ = ``1 - p`` for the OOD test).

Ours: JAX's generator instead of Python's ``random`` module (statistics match, bytes cannot);
`multicolor_digits` returns numpy arrays (wrap them with ``zoo.data.to_dataset`` for a Hugging Face
``Dataset``) and also the colour indices, so an experiment can render batches on the fly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range, is_traced

__all__ = ["PALETTE10", "color_maps", "make_multicolor", "multicolor_digits", "patch_index", "render",
           "sample_patch_colors"]

#: red, green, blue, yellow, cyan, magenta, black, white, gray, orange (RGB / 255)
PALETTE10 = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
                      (0, 0, 0), (255, 255, 255), (128, 128, 128), (255, 165, 0)], np.float32) / 255.0

N_PATCHES = 32
_BLOCKS = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2))


def patch_index(h: int) -> np.ndarray:
    """``int32[3h, 3h]``: the patch number (0..31) of each canvas pixel, -1 in the centre (digit) block."""
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 2 or h % 2:
        raise ValueError(f"h: expected an even image side >= 2, got {h!r}")
    h = int(h)
    q = h // 2
    idx = -np.ones((3 * h, 3 * h), np.int32)
    j = 0
    for br, bc in _BLOCKS:
        for pr in range(2):
            for pc in range(2):
                r0, c0 = br * h + pr * q, bc * h + pc * q
                idx[r0:r0 + q, c0:c0 + q] = j
                j += 1
    return idx


def color_maps(key: jax.Array, n_patches: int = N_PATCHES, num_classes: int = 10, n_colors: int = 10) -> jax.Array:
    """``int32[n_patches, num_classes]``: per patch a random permutation of the colours (first ``num_classes``)."""
    check_range("n_patches", n_patches, low=1)
    check_range("n_colors", n_colors, low=1)
    check_range("num_classes", num_classes, low=1, high=n_colors)
    keys = jax.random.split(key, n_patches)
    return jax.vmap(lambda k: jax.random.permutation(k, n_colors)[:num_classes])(keys).astype(jnp.int32)


def sample_patch_colors(key: jax.Array, labels: Any, maps: Any, rho: Any, *, n_colors: int = 10,
                        single_color: bool = False) -> jax.Array:
    """``int32[N, n_patches]`` colour index per patch: ``maps[j, y]`` with probability ρ, else uniform."""
    check_array("labels", labels, ndim=1, kind="iu")
    check_array("maps", maps, ndim=2, kind="iu")
    check_array("rho", rho, shape=())
    if not is_traced(rho):
        check_range("rho", float(rho), low=0.0, high=1.0)
    if not is_traced(labels) and np.size(labels) and (np.min(labels) < 0 or np.max(labels) >= np.shape(maps)[1]):
        raise ValueError(f"labels: expected values in [0, {np.shape(maps)[1]}) (columns of maps), got "
                         f"[{np.min(labels)}, {np.max(labels)}]")
    labels, maps = jnp.asarray(labels), jnp.asarray(maps)
    n, P = labels.shape[0], maps.shape[0]
    k1, k2 = jax.random.split(key)
    shape = (n, 1) if single_color else (n, P)
    agree = jax.random.uniform(k1, shape) < rho
    rnd = jax.random.randint(k2, shape, 0, n_colors)
    true = maps[:1, labels].T if single_color else maps[:, labels].T  # [n, 1 or P]
    col = jnp.where(agree, true, rnd).astype(jnp.int32)
    return jnp.broadcast_to(col, (n, P))


def render(images: Any, colors: Any, palette: Any = PALETTE10) -> jax.Array:
    """``f[N, 3h, 3h, 3]``: digits ``images: f[N, h, h]`` in the centre, patch ``j`` painted ``palette[colors[:, j]]``."""
    check_array("images", images, ndim=3)
    if np.shape(images)[1] != np.shape(images)[2]:
        raise ValueError(f"images: expected square images f[N, h, h], got shape {np.shape(images)}")
    check_array("colors", colors, shape=(np.shape(images)[0], N_PATCHES), kind="iu")
    check_array("palette", palette, ndim=2)
    if np.shape(palette)[1] != 3:
        raise ValueError(f"palette: expected RGB rows f[n_colors, 3], got shape {np.shape(palette)}")
    h = np.shape(images)[1]
    idx = patch_index(h)
    images = jnp.asarray(images)
    pal = jnp.asarray(palette, images.dtype)
    patch_rgb = pal[jnp.asarray(colors)]  # [N, 32, 3]
    canvas = patch_rgb[:, np.maximum(idx, 0)]  # [N, 3h, 3h, 3]
    canvas = jnp.where(jnp.asarray(idx >= 0)[None, :, :, None], canvas, 0.0)
    return canvas.at[:, h:2 * h, h:2 * h, :].set(images[:, :, :, None])


def make_multicolor(key: jax.Array, images: Any, labels: Any, maps: Any, rho: Any, *, single_color: bool = False,
                    palette: Any = PALETTE10) -> jax.Array:
    """``f[N, 3h, 3h, 3]`` MultiColor images (module docstring); pure and jit-able (``single_color`` static)."""
    check_array("palette", palette, ndim=2)
    check_array("maps", maps, ndim=2, kind="iu")
    if not is_traced(maps) and np.max(maps) >= np.shape(palette)[0]:
        raise ValueError(f"palette: expected at least {int(np.max(maps)) + 1} colours (the maps' largest index), "
                         f"got {np.shape(palette)[0]} rows")
    check_array("images", images, ndim=3)
    if np.shape(labels)[:1] != np.shape(images)[:1]:
        raise ValueError(f"labels: expected {np.shape(images)[0]} labels (one per image), got shape {np.shape(labels)}")
    cols = sample_patch_colors(key, labels, maps, rho, n_colors=np.shape(palette)[0], single_color=single_color)
    return render(images, cols, palette)


def multicolor_digits(key: jax.Array, id_sp: float = 1.0, p: float = 0.7, *, single_color: bool = False,
                      n_train: int = 1200, render_images: bool = True) -> dict[str, Any]:
    """MultiColorDigits from scikit-learn's bundled digits (module docstring).

    Returns ``{"train", "iid", "ood"}``: each ``(x: f32[N, 24, 24, 3], y: i32[N])`` (with
    ``render_images=False``: ``(digits f32[N, 8, 8], y, colors i32[N, 32])`` instead), and ``"maps"``.
    The split is fixed (seed 0); ``key`` draws the colour maps and the colours.
    """
    check_range("id_sp", id_sp, low=0.0, high=1.0)
    check_range("p", p, low=0.0, high=1.0)
    check_range("n_train", n_train, low=1, high=1796)
    from zoo.data import load_digits

    d = load_digits()
    perm = np.random.default_rng(0).permutation(len(d["y"]))
    imgs, y = d["x"].reshape(-1, 8, 8)[perm], d["y"][perm].astype(np.int32)
    km, kt, ki, ko = jax.random.split(key, 4)
    maps = color_maps(km)
    out: dict[str, Any] = {"maps": np.asarray(maps)}
    parts = {"train": (slice(0, n_train), kt, id_sp), "iid": (slice(n_train, None), ki, id_sp),
             "ood": (slice(n_train, None), ko, 1.0 - p)}
    for name, (sl, k, rho) in parts.items():
        cols = sample_patch_colors(k, y[sl], maps, jnp.float32(rho), single_color=single_color)
        if render_images:
            out[name] = (np.asarray(render(imgs[sl], cols)), y[sl])
        else:
            out[name] = (imgs[sl], y[sl], np.asarray(cols))
    return out
