"""Dataset stage: immutable dataset versions, token counts and packed token shards."""
