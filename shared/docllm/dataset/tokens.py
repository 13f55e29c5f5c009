"""Former name of :mod:`docllm.dataset.shards_output`.

Kept only because ``docllm.cli.pipeline_cmds`` (``cmd_dataset_show``) still imports
``load_token_counts`` from here; remove this module once it imports from
:mod:`docllm.dataset.shards_output`.
"""

from __future__ import annotations

from docllm.dataset.shards_output import load_token_counts

__all__ = ["load_token_counts"]
