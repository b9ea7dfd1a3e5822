"""Runnable examples: ``python -m fastbp.examples.<name> --help``."""
