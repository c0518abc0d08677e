"""The bench's bookkeeping (no sandbox): play recap parsing, latency options, target checks."""

from __future__ import annotations

import pytest

from prow_sandbox import bench_onboard
from prow_sandbox.bench_onboard import Run, _parse_recap, parse_latency, targets

RECAP = """
TASK [debug] *******************************************************************
ok: [build-1] => changed=7 is not a recap line

PLAY RECAP *********************************************************************
build-1                    : ok=12   changed=2    unreachable=0    failed=0    skipped=3    rescued=0    ignored=0
build-2                    : ok=12   changed=0    unreachable=0    failed=0    skipped=3    rescued=0    ignored=0
localhost                  : ok=5    changed=1    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
"""


def test_recap_sums_every_host_line_of_the_last_recap():
    assert _parse_recap(RECAP) == 3
    # Only the last recap counts (a playbook that imports plays prints one at the end).
    assert _parse_recap("PLAY RECAP ***\nlocalhost : ok=1 changed=9 unreachable=0\n" + RECAP) == 3
    assert _parse_recap(RECAP.replace("changed=2 ", "changed=0 ").replace("changed=1 ", "changed=0 ")) == 0
    assert _parse_recap("ok: [localhost] changed=1") is None


def test_latency_option():
    assert parse_latency("60") == {"CREATE_CLUSTER": 60.0}
    assert parse_latency("0") == {}
    assert parse_latency("CREATE_CLUSTER=30,upgrade_nodes=5") == {"CREATE_CLUSTER": 30.0, "UPGRADE_NODES": 5.0}
    with pytest.raises(ValueError):
        parse_latency("CREATE=30")


def _runs(first1: float, first5: float, noop1: float, noop20: float, floor: float = 0.5,
          latency: dict | None = None, writes: int = 0) -> list[Run]:
    latency = {"CREATE_CLUSTER": 60.0} if latency is None else latency
    runs = [Run(1, "onboard, first (GKE create 60 s)", first1, 1, latency=latency),
            Run(5, "onboard, first (GKE create 60 s)", first5, 1, latency=latency)]
    for count, wall in ((1, noop1), (5, noop1 * 1.5), (20, noop20)):
        runs.append(Run(count, "onboard, no-op", wall, 1, changed=0, floor_wall=floor, gcp_writes=writes))
    return runs


def test_targets_met():
    lines = targets(_runs(first1=80, first5=100, noop1=2.0, noop20=5.0))
    assert [line.split(":", 1)[0] for line in lines] == ["- met"] * 3 + ["- no target"] + ["- met"] * 2, lines
    assert "1.25× (target ≤ 1.5×)" in lines[0]
    assert "2.50× (target ≤ 3.0×)" in lines[4]


def test_targets_not_met_are_named():
    lines = targets(_runs(first1=80, first5=380, noop1=3.0, noop20=20.0, writes=1))
    verdicts = [line.split(":", 1)[0] for line in lines]
    # first onboarding 4.75x; no-op 1: 6x the floor > 4.7x; 5: 9x > 7.7x; 20: no baseline;
    # 20 vs 1: 6.7x; the writes.
    assert verdicts == ["- **NOT met**", "- **NOT met**", "- **NOT met**", "- no target", "- **NOT met**",
                        "- **NOT met**"], lines
    assert "GCP writes 1" in lines[-1]


def test_first_onboarding_ratio_needs_the_same_latency():
    runs = _runs(first1=80, first5=100, noop1=2.0, noop20=5.0)
    runs[0].latency = {}
    assert targets(runs)[0].startswith("- not checked:")
    assert bench_onboard.FIRST_OVERLAP_TARGET == (5, 1, 1.5)
