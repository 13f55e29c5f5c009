"""Event contracts: what the platform emits, and the AWS events it consumes."""
