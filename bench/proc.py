"""What the benchmarks read of other processes, from /proc (Linux): CPU time and memory.
CPU is in seconds (clock ticks / SC_CLK_TCK), memory in MB (2**20 bytes)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (all its threads) so far."""
    fields, tick = _stat(pid), os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def server_cpu_seconds(pid: int) -> float:
    """A forking server's CPU so far (a PostgreSQL postmaster): its own, its reaped children's
    (the cutime and cstime fields) and its living children's."""
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(int(value) for value in _stat(pid)[11:15]) / tick
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            child = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(child[1]) == pid:
            total += (int(child[11]) + int(child[12])) / tick
    return total


def memory_mb(pid: int, field: str) -> float:
    """A VmXXX line of /proc/PID/status (VmHWM: peak resident size; VmRSS: now), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
