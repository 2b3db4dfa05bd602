"""Routing models: dynamic routing by agreement (``core``), weighted capsule networks with
domain-belonging degree (``capsule_dbd``), AdaptDHM for multi-domain CTR (``adaptdhm``)."""
