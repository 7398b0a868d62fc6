"""How a run executes and survives: run directories, files written whole, checkpoints,
logs, the distribution strategy."""
