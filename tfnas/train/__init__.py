"""Training a derived network: the trainer and `python -m tfnas.train`."""
