"""The ``docllm`` command."""
