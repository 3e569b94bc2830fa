"""Dataset plugins reading real image-text collections from disk.

The synthetic ``shapes`` dataset is a separate plugin module (:mod:`plugins.datasets.shapes`)
so that it can be disabled or loaded on its own.
"""
