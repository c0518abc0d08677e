"""``prow-sandbox bench-kube``: time from process start to /readyz, and memory per cluster.

A benchmark, not a test: it prints numbers for the README and ``make bench`` and asserts
nothing. Clusters start one after the other (so each start time is uncontended) in a
throw-away state directory; RSS is read once all of them are up and have idled briefly.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from . import build, kube

IDLE_SECONDS = 5.0


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB, from /proc/PID/status (VmRSS, in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main(count: int = 2) -> int:
    """Start ``count`` clusters, print a table of ready time and RSS, stop them."""
    binary = build.ensure_binary()
    print(f"binary {binary} ({binary.stat().st_size / 1e6:.0f} MB), "
          f"Kubernetes {build.kube_version()}")
    with tempfile.TemporaryDirectory(prefix="prow-sandbox-bench-") as tmp:
        state = Path(tmp)
        names = [f"bench-{i}" for i in range(count)]
        try:
            clusters = [kube.start_cluster(name, state) for name in names]
            time.sleep(IDLE_SECONDS)
            print(f"{'cluster':<10} {'start to /readyz':>17} {'RSS after idle':>15}")
            for c in clusters:
                print(f"{c.name:<10} {c.ready_seconds:>15.2f} s {rss_mb(c.pid):>11.0f} MiB")
        finally:
            for name in names:
                kube.stop_cluster(name, state)
    return 0
