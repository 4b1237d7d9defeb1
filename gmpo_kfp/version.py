"""The package version, in a module that imports nothing (``gmpo --version``, image tags)."""

__version__ = "0.1.0"
