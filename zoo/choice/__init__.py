"""Mechanism design, social choice and online algorithms: facility location, fair subset selection,
online stochastic matching, information acquisition, benchmark ranking aggregation (``core``: shared
ranking and voting utilities)."""
