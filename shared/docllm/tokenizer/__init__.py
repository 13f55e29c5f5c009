"""Tokenizer stage: SentencePiece training, Hugging Face export, content-addressed versions.

Import :mod:`docllm.tokenizer.settings` and :mod:`docllm.tokenizer.artifacts`
from Lambdas (pydantic only); ``train``, ``encode`` and ``hf_export`` need the
``ml`` extra (sentencepiece, transformers).
"""
