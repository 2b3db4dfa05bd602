"""Diffusion forecasting: a conditional DDPM/DDIM core (``diffusion``), CogDPM precision-weighted guidance
(``cogdpm``), and forecast metrics (``metrics``)."""
