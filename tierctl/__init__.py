"""tierctl: progressive three-tier pruning campaigns. Importing this package costs nothing."""

__version__ = "0.1.0"
