"""The platform's HTTP API (Powertools event handler behind API Gateway, or the local runtime)."""
