"""Run by tests/test_delta_kernel.py in the delta-kernel venv: read a Delta table with DuckDB's
delta extension (``delta_scan``) and print its rows' (uuid, date, hour) as JSON."""

import json
import sys
from pathlib import Path

import duckdb
import duckdb_ext  # type: ignore[import-not-found]

extensions = Path(next(iter(duckdb_ext.__path__))) / "extensions"  # a namespace package
con = duckdb.connect()
con.execute(f"SET extension_directory = '{extensions}'")
con.execute("SET enable_progress_bar = false")
con.execute("LOAD delta")
rows = con.execute(
    "SELECT uuid, CAST(date AS VARCHAR), hour FROM delta_scan(?) ORDER BY uuid", [sys.argv[1]]
).fetchall()
print(json.dumps({"version": duckdb.__version__, "rows": rows}))
