"""The local inference engine: continuous batching over our own model, behind an OpenAI-compatible server."""
