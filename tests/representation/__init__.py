"""Tests of zoo.representation (a package, so that basenames such as test_float64 may repeat across test folders)."""
