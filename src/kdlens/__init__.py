"""kdlens: distill a teacher network into a smaller student and see what was distilled."""

__version__ = "0.1.0"
