"""Representation learning and clustering papers.

Import a paper's module directly (nothing is imported here, so ``import zoo.representation`` stays light):

  ``zoo.representation.ppp``  Probabilistic Partitive Partitioning (arXiv 2003.04372): k-means bisection
                              validated by Gaussian mixtures and BIC; the number of clusters is found.
"""
