"""Statistical learning: one module per paper (PRESTO, quantile aggregation, predictive multiplicity, universality lens, ...)."""
