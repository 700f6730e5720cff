"""Command-line interface: ``odssam <command>``."""
