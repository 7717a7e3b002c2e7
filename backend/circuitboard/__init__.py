"""Circuitboard: attribution graphs of language models with transcoders, served to the browser."""

__version__ = "0.1.0"
