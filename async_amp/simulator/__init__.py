"""Test doubles for the Export API: a deterministic dataset, a ZIP writer and a real server.

from async_amp.simulator import Dataset, Fault, FaultPlan, run_simulator

async with run_simulator(Dataset(events_per_hour=500), api_key="k", secret_key="s") as sim:
    ...  # GET f"{sim.base_url}/api/2/export?start=20261101T00&end=20261101T23"
"""

from async_amp.simulator.dataset import Dataset, export_param, hours_between, utc_hour
from async_amp.simulator.server import (
    EXPORT_PATH,
    ExportSimulator,
    Fault,
    FaultFn,
    FaultPlan,
    Injection,
    Latency,
    MemberStyle,
    RequestInfo,
    RequestRecord,
    SimulatorOptions,
    alternating_style,
    corrupt_gzip,
    run_simulator,
    serve_forever,
)
from async_amp.simulator.zipbuild import ZipMember, build_zip, empty_zip, iter_zip

__all__ = [
    "EXPORT_PATH",
    "Dataset",
    "ExportSimulator",
    "Fault",
    "FaultFn",
    "FaultPlan",
    "Injection",
    "Latency",
    "MemberStyle",
    "RequestInfo",
    "RequestRecord",
    "SimulatorOptions",
    "ZipMember",
    "alternating_style",
    "build_zip",
    "corrupt_gzip",
    "empty_zip",
    "export_param",
    "hours_between",
    "iter_zip",
    "run_simulator",
    "serve_forever",
    "utc_hour",
]
