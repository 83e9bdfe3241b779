"""The package's version (``async_amp.__version__``), in a module of its own so that the modules
that send or print it import it without importing the package's root, which names them all."""

__all__ = ["__version__"]

__version__ = "0.1.0"
