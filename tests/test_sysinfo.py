import subprocess
import sys

import pytest

from geoassist.sysinfo import peak_rss_mb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the execve carry-over is Linux's")
def test_a_worker_does_not_report_its_parents_memory():
    ballast = bytearray(400 * 2**20)
    ballast[:: 4096] = b"\1" * len(ballast[:: 4096])  # make the pages resident
    assert peak_rss_mb() > 400
    code = "from geoassist.sysinfo import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 5 < float(out.stdout) < 300
