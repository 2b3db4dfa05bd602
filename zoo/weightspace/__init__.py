"""Weight-space analysis: permutation weight matching and linear mode connectivity, WiSE-FT/BANG,
grokking tickets (``core``: permutations, interpolation, barriers, merging; ``masks``: magnitude pruning
and masked training)."""
