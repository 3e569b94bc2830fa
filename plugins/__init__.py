"""The default plugins shipped with daer: the DAER paper's components, alternatives,
datasets and baselines.

Nothing in :mod:`daer_core` or :mod:`registry` imports this package: each subpackage is
declared under the ``daer`` entry-point group in ``pyproject.toml`` and discovered exactly like
a third-party plugin.
"""
