"""tcm: visual-tempo action recognition with the Temporal Correlation Module."""

__version__ = "0.1.0"
