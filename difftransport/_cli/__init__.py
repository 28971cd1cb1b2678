"""The ``difftransport`` command line: ``run``, ``plot``, ``info``, ``fit`` and ``scale`` (I/O and plots only)."""

from .main import main

__all__ = ["main"]
