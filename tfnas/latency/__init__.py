"""Latency side of tfnas: devices that time models (tables and predictors build on them)."""
