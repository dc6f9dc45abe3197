"""OpenSergo for Python: control plane and data plane."""

__version__ = "0.1.0"
