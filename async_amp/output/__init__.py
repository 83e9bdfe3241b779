"""The output: one ``Output`` = a *store* (local folder, Azure Blob, S3) x a *format* (ndjson,
gzip, parquet, delta, or one registered with ``register_format``), recorded at each project's
root in ``_async_amp.json`` and followed by every command.

- ``registry.py``: the ``Format`` protocol and the registry of formats (a leaf: no I/O, no
  heavy import; the built-in formats load their modules only when used);
- ``builtin.py``: ndjson, gzip, parquet and delta as formats;
- ``marker.py``: the marker a project's root records (format, layout version, project, tool
  version), and how an output made before it existed is recognised from its files;
- ``open.py``: ``open_output`` composes a store and the format the marker (or the config)
  names into the sink a run writes through and ``status``/``verify``/``report`` read.

This package's ``__init__`` imports nothing, so the config can check format names against the
registry without loading the storage modules.
"""
