"""async-amp: fast, lossless, resumable Amplitude Export API extraction.

Local NDJSON folders or Azure Blob Storage, hour by hour, each hour committed only when whole.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
