"""How much memory and how many threads the local warehouse's DuckDB may use.

DuckDB's defaults (80% of physical RAM, every core the OS reports) suit a database server,
not a tool that shares the machine with the unification engine's arrays (numpy, in the same
process) and with the user's other work; and they ignore a container's cgroup limit. So each
warehouse connection gets a `memory_limit` and `threads` from the machine, and a spill
folder inside the workspace's `.cdp_local`, where DuckDB writes what does not fit.

Overrides, for the machine rather than the project (a config travels between machines; the
memory is the process's): `CDP_MCP_LOCAL_MEMORY_LIMIT` (a size: `2GB`, `1536MiB`) and
`CDP_MCP_LOCAL_THREADS` (a whole number).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cdp_mcp.backends.base import BackendError

MEMORY_ENV = "CDP_MCP_LOCAL_MEMORY_LIMIT"
THREADS_ENV = "CDP_MCP_LOCAL_THREADS"
_MIB = 1024**2
_GIB = 1024**3
# DuckDB's share by default: a quarter of the machine, at most 2 GiB. At 1 GiB a 10M-row run
# spilled in staging and unification (up to 0.7 GB in the spill folder) and an incremental
# enrichment failed to pin a block (bench/bench_e2e.py); at 2.5 GiB its peak RSS was 3.2 GB.
# Python and DuckDB's own structures come on top of the limit, and the unification engine's
# arrays (numpy, in the same process) beside it, under the 4 GB a 10M-row run may take.
_DEFAULT_SHARE = 0.25
_DEFAULT_CAP = 2048 * _MIB
_MINIMUM = 128 * _MIB  # below this DuckDB fails ordinary statements
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": _MIB,
    "gib": _GIB,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_CGROUP_FILES = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


class ResourceSettingError(BackendError):
    """An override of the warehouse's memory or threads that cannot be used."""


@dataclass(frozen=True)
class Resources:
    memory_limit: int  # bytes
    threads: int

    def duckdb_config(self, spill_dir: Path) -> dict[str, str | bool | int | float | list[str]]:
        return {
            "memory_limit": f"{self.memory_limit // _MIB}MiB",
            "threads": self.threads,
            "temp_directory": str(spill_dir),
        }


def machine_memory() -> int:
    """Bytes this process may use: the cgroup's limit when it sets one, else physical RAM."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_FILES:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < physical:  # "max" or a huge v1 value: none
            return int(text)
    return physical


def machine_threads() -> int:
    """Cores this process may run on (its CPU affinity, which a container narrows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def parse_size(text: str) -> int:
    """`2GB`, `1536MiB`, `1.5GiB` or a number of bytes -> bytes; ValueError otherwise."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(text)
    return int(float(match.group(1)) * _UNITS[unit])


def resources(env: Mapping[str, str] | None = None) -> Resources:
    """The warehouse's limits: the overrides in `env` (default os.environ), else from the
    machine. Raises ResourceSettingError naming the variable for an unusable override."""
    env = os.environ if env is None else env
    machine = machine_memory()
    memory = min(int(machine * _DEFAULT_SHARE), _DEFAULT_CAP)
    raw = env.get(MEMORY_ENV, "").strip()
    if raw:
        try:
            memory = parse_size(raw)
        except ValueError:
            raise ResourceSettingError(
                f"{MEMORY_ENV}={raw!r} is not a size; give e.g. 2GB or 1536MiB"
            ) from None
        if memory < _MINIMUM:
            raise ResourceSettingError(
                f"{MEMORY_ENV}={raw!r} is below the {_MINIMUM // _MIB}MiB DuckDB needs; "
                "give e.g. 1GB"
            )
        if memory > machine:
            raise ResourceSettingError(
                f"{MEMORY_ENV}={raw!r} exceeds this machine's {machine / _GIB:.1f} GiB; "
                "give a smaller size"
            )
    threads = machine_threads()
    raw = env.get(THREADS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ResourceSettingError(
                f"{THREADS_ENV}={raw!r} is not a whole number of threads of at least 1; give e.g. 2"
            )
        threads = int(raw)
    return Resources(memory_limit=max(memory, _MINIMUM), threads=threads)
