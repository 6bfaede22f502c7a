"""Facts about the running process that benchmarks and model cards report."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident memory of this process's program image, in MiB.

    On Linux this is ``VmHWM``. ``ru_maxrss`` is not used there because the kernel carries
    it over ``execve`` from the forked parent: a worker started by a 4 GB process would
    report at least 4 GB whatever it did itself.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
