"""A process's memory from /proc (Linux): resident now, the peak since a reset, in MiB."""

from __future__ import annotations

from pathlib import Path


def _status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def rss_mib(pid: int) -> float:
    """Resident memory now (VmRSS)."""
    return _status_mib(pid, "VmRSS")


def peak_mib(pid: int) -> float:
    """The most resident memory since the process started or since `reset_peak` (VmHWM)."""
    return _status_mib(pid, "VmHWM")


def reset_peak(pid: int) -> float:
    """Start measuring the peak again from now (clear_refs 5); the resident memory now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return rss_mib(pid)
