"""The version, in a leaf module: the package face and the backends read it without importing each other."""

__version__ = "0.1.0"
