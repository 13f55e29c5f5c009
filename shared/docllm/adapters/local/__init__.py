"""Local adapters: everything under one data directory, safe across threads and processes."""
