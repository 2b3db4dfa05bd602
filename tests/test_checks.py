"""zoo.checks: the shared argument validation (messages name the argument)."""

import jax.numpy as jnp
import numpy as np
import pytest

from zoo.checks import check_array, check_choice, check_range


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_float_kinds_include_ml_dtypes(dtype):
    x = jnp.ones((2, 3), dtype)
    check_array("x", x, kind="f", ndim=2)  # bfloat16 is numpy kind "V": still a float here
    with pytest.raises(ValueError, match=r"x: contains 1 non-finite value\(s\).*index \(1, 2\)"):
        check_array("x", x.at[1, 2].set(jnp.nan), kind="f")


def test_kind_shape_and_rows():
    with pytest.raises(ValueError, match="w: expected dtype kind in 'f', got int32"):
        check_array("w", np.ones(3, np.int32), kind="f")
    with pytest.raises(ValueError, match=r"w: expected shape \(\*, 4\), got \(3, 5\)"):
        check_array("w", np.ones((3, 5)), shape=(None, 4))
    with pytest.raises(ValueError, match="w: expected at least 2 rows, got 1"):
        check_array("w", np.ones((1, 5)), min_size=2)
    check_array("q", np.array([1, 2], np.uint8), kind="iu", finite=True)  # ints are never scanned for NaN


def test_range_and_choice():
    with pytest.raises(ValueError, match="bits"):
        check_range("bits", 9, low=2, high=8)
    with pytest.raises(ValueError, match="norm"):
        check_choice("norm", "mad", ("std", "none"))
