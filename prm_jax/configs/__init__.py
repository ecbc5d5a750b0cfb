"""The configs that ship with the package: `base` (every training key and its default) and `demo`.

Experiment files (`experiments/*.py`) start from `base.get_config()` and change only what differs.
"""
