"""docllm: turn an organisation's own documentation into its own language models.

The package is split so that a reader finds each stage by its folder name:

- ``events``    event contracts (what the platform emits) and AWS event models
- ``ports``     small abstract interfaces for every side effect
- ``adapters``  ``aws`` (boto3, opensearch-py) and ``local`` (embedded) implementations
- ``ingest``    extraction, cleaning, dedup and chunking of documents (pure)
- ``search``    the retrieval index (analyzer, ranking, evaluation)
- ``dataset``   dataset versions, splits, token shards
- ``tokenizer`` SentencePiece training and Hugging Face export
- ``model``     the GPT-style decoder and its Hugging Face export
- ``training``  the training loop, checkpoints, distributed set-up
- ``jobs``      entry points that follow the SageMaker container contract
- ``runtime``   the local runtime that wires everything as ``template.yaml`` does
- ``cli``       the ``docllm`` command
"""

__version__ = "0.1.0"
