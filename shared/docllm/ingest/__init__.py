"""Document ingestion: sniff, extract, clean, dedup and chunk (pure domain code)."""
