"""Data files shipped with tfnas (built-in latency tables)."""
