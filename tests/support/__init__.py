"""Test doubles shared by several test files; not part of the product (nothing under ``shared/`` imports them)."""
