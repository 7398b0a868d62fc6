"""Searchable Keras layers (superkernel, mixed ops)."""
