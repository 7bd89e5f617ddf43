"""Step entry points run as subprocesses: `python -m tierctl.steps prune|finetune|eval`."""
