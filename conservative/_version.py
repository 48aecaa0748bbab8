"""The version of conservative-ad, single-sourced: pyproject.toml reads it, and ``conservative``,
``algorithms`` and ``theory`` re-export it as ``__version__``."""

__version__ = "0.1.0"
