"""``prow-sandbox bench``: onboarding, no-op re-run and rotation against a private sandbox.

A benchmark, not a test: it prints a markdown table (and writes it to ``docs/bench.md``)
and only fails when a playbook fails. For each cluster count (1, 5 and 20 by default) it
starts a fresh sandbox of its own (a ``prow`` apiserver and the GCP fake, in a new state
directory, so nothing is shared with ``make sandbox`` or other runs), installs the real
External Secrets CRDs, writes a vars file with that many GKE build clusters, and runs:

1. ``onboard.yml`` on the empty world (first onboarding: creates the GKE clusters); for the
   latency counts (1 and 5 by default) the fake's GKE operations last as long as real ones
   (``gke_operation_latency``, default a 60 s cluster create), so clusters onboarded one
   after the other cost that much each and overlapping ones do not;
2. ``onboard.yml`` again (no-op: must report changed=0 and write nothing);
3. ``rotate.yml`` (tokens not due: what the periodic job does most of the time);
4. ``rotate.yml -e force_rotation=true`` (a rotation);
5. the floor: ``python -m prow_sandbox.bench_floor``, the reads of runs 2 and 3 in one bare
   process with the official clients (median of 3 runs);

plus once, ``ansible-playbook`` with a single debug task (the fixed cost of any playbook).
Scenarios ``noop`` (2 and its floor) and ``rotate`` (3, 4 and its floor) can be chosen; the
first onboarding always runs, since it makes the world the others need. The issue #13
targets are checked and printed (met / NOT met) without failing the bench.

Per run it records wall time, CPU time (user+sys of every process of the run) and API calls:

* GCP, from the fake's request log (``gcp/requests.jsonl``): reads, writes, and token calls
  (oauth2/sts: authentication, counted apart);
* Kubernetes writes, from the audit logs of every apiserver of the sandbox (write verbs,
  without ``dryRun=All``, TokenReviews, SubjectAccessReviews, the apiserver's own writes and,
  on the clusters the fake created, the fake's bootstrap);
* Kubernetes reads, from the client side: the audit policy logs writes only, so a
  ``sitecustomize`` probe (``bench_probe.py``, on PYTHONPATH) logs every HTTP request the
  run's Python processes send through urllib3 (dry-run PATCHes, TokenReviews and access
  reviews count as reads); it also records each Ansible module process (module tasks);
* module processes: each is a new interpreter that re-imports its client libraries;
* the sandbox's own load: CPU time of its processes (the apiservers and the fake) during
  each run, and after the first onboarding their RSS and idle CPU: with 20 clusters the
  sandbox runs 21 apiservers on the same cores as Ansible.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from . import assets, build, kube

REPO = kube.REPO_ROOT
EXAMPLE_VARS = REPO / "examples" / "sandbox-vars.yml"
DEFAULT_OUTPUT = REPO / "docs" / "bench.md"
FLOOR_REPEATS = 3
AUDIT_SETTLE = 1.0  # audit events are written just after the response
IDLE_SAMPLE = 5.0  # seconds over which the idle sandbox's CPU use is measured
DEFAULT_COUNTS = (1, 5, 20)
DEFAULT_LATENCY = {"CREATE_CLUSTER": 60.0}  # a GKE cluster create takes minutes; 60 s is kind
DEFAULT_LATENCY_COUNTS = (1, 5)
SCENARIOS = ("noop", "rotate")
# Issue #13's targets, for ratios measured in one run on this 2-core machine.
FIRST_OVERLAP_TARGET = (5, 1, 1.5)  # 5 clusters' first onboarding (GKE latency) <= 1.5x one's
NOOP_SCALE_TARGET = (20, 1, 3.0)  # 20 clusters' no-op <= 3x one's
NOOP_FLOOR_TODAY = {1: 4.7, 5: 7.7}  # no-op x floor before the issue (docs/bench.md, 2026-11-23)

# Requests that authenticate or ask, rather than change state.
_NOT_WRITES = re.compile(r"/(tokenreviews|selfsubjectaccessreviews|subjectaccessreviews|"
                         r"localsubjectaccessreviews|selfsubjectrulesreviews)(\?|$)")
_K8S_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
AUTH_SERVICES = {"oauth2", "sts"}


@dataclass
class Run:
    clusters: int
    name: str
    wall: float
    cpu: float
    changed: int | None = None
    module_procs: int = 0
    module_seconds: float = 0.0
    gcp_reads: int = 0
    gcp_writes: int = 0
    gcp_tokens: int = 0
    k8s_reads: int = 0
    k8s_writes: int = 0
    k8s_writes_client: int = 0
    external: int = 0
    modules: Counter = field(default_factory=Counter)
    module_time: dict = field(default_factory=lambda: defaultdict(float))
    floor_wall: float | None = None  # for no-op runs: the matching floor's wall time
    sandbox_cpu: float = 0.0  # CPU s of the sandbox's processes (apiservers, fake) meanwhile
    latency: dict = field(default_factory=dict)  # the fake's gke_operation_latency meanwhile
    note: str = ""


@dataclass
class SandboxLoad:
    """The sandbox of one cluster count once its clusters exist, idle."""

    clusters: int
    apiservers: int
    rss_mib: float
    idle_cpu: float  # share of one core, over IDLE_SAMPLE seconds
    mem_available_mib: float


# ------------------------------------------------------------------ sandbox


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def _start_sandbox(state: Path, latency: dict[str, float]) -> dict:
    from .gcp import daemon  # pylint: disable=import-outside-toplevel

    try:
        prow = kube.start_cluster("prow", state)
    except kube.ClusterStartError as exc:
        # The free port chosen before the start can be taken by another sandbox on the
        # machine in the meantime ("address already in use"); one retry, on new ports.
        if "address already in use" not in str(exc):
            raise
        print("bench: the prow apiserver lost its port to another process; retrying once", flush=True)
        prow = kube.start_cluster("prow", state)
    gcp = daemon.start(state, {"gke_operation_latency": latency})
    endpoints = state / "endpoints.json"
    endpoints.write_text(json.dumps(gcp["endpoints"], indent=2) + "\n", encoding="utf-8")
    subprocess.run([_venv_bin("kubectl"), "--kubeconfig", str(prow.kubeconfig), "apply", "--server-side",
                    *(f"--filename={crd}" for crd in assets.files("eso-crds"))], check=True, stdout=subprocess.DEVNULL)
    return {
        "SANDBOX_DIR": str(state),
        "PROW_KUBECONFIG": str(prow.kubeconfig),
        "SANDBOX_GCP_PROJECT": gcp["project"],
        "GOOGLE_APPLICATION_CREDENTIALS": str(gcp["credentials_file"]),
        "GCP_API_ENDPOINTS": str(endpoints),
    }


def _stop_sandbox(state: Path) -> None:
    from .gcp import daemon  # pylint: disable=import-outside-toplevel

    daemon.stop(state)  # stops the GKE apiservers it started
    for name in kube.cluster_names(state):
        kube.stop_cluster(name, state)
    left = kube.list_clusters(state)
    if left:
        print(f"bench: still running in {state}: {[c.name for c in left]}", file=sys.stderr)


def _vars(count: int, state: Path) -> dict:
    data = yaml.safe_load(EXAMPLE_VARS.read_text(encoding="utf-8"))
    template = data["build_clusters"][0]
    clusters = []
    for i in range(1, count + 1):
        cluster = copy.deepcopy(template)
        cluster["alias"] = f"build-{i}"
        cluster["gke"]["name"] = f"prow-build-{i}"
        clusters.append(cluster)
    data["build_clusters"] = clusters
    data["prow"]["output_dir"] = str(state / "out")
    return data


def _floor_config(data: dict, env: dict) -> dict:
    prow = data["prow"]
    return {
        "endpoints": json.loads(Path(env["GCP_API_ENDPOINTS"]).read_text(encoding="utf-8")),
        "credentials_file": env["GOOGLE_APPLICATION_CREDENTIALS"],
        "bucket": prow["bucket"],
        "prow_kubeconfig": env["PROW_KUBECONFIG"],
        "prow_namespace": prow.get("namespace", "default"),
        # The credentials role's defaults.
        "cluster_secret_store": "prow-gsm",
        "admin_ksa": "serviceaccount-cluster-admin",
        "admin_ksa_namespace": "default",
        "admin_binding": "serviceaccount-cluster-admin-crb",
        "clusters": [{
            "alias": c["alias"], "project": c["project"], "location": c["gke"]["location"],
            "name": c["gke"]["name"],
            "secret": f"projects/{c.get('secret_project', prow['project'])}/secrets/"
                      f"{c.get('secret_name', 'prow_build_cluster_kubeconfig_' + c['alias'])}",
            "job_service_account": c.get("job_service_account", "prowjob-default-sa"),
            "pod_namespace": c.get("pod_namespace", "test-pods"),
            "rotate_before_seconds": 86400,
        } for c in data["build_clusters"]],
    }


# ------------------------------------------------------------------ measuring


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _log_sizes(state: Path) -> dict[Path, int]:
    paths = [state / "gcp" / "requests.jsonl", *sorted((state / "clusters").glob("*/audit.log"))]
    return {p: p.stat().st_size for p in paths if p.exists()}


def _new_lines(path: Path, offsets: dict[Path, int]) -> list[dict]:
    if not path.exists():
        return []
    with open(path, "rb") as handle:
        handle.seek(offsets.get(path, 0))
        data = handle.read()
    out = []
    for line in data.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _k8s_audit_writes(state: Path, offsets: dict[Path, int]) -> int:
    count = 0
    for log in sorted((state / "clusters").glob("*/audit.log")):
        created_by_fake = log.parent.name.startswith("gke-")
        for event in _new_lines(log, offsets):
            user = event.get("user", {}).get("username", "")
            uri = event.get("requestURI", "")
            if event.get("stage") not in ("ResponseComplete", "Panic") or event.get("verb") not in kube.WRITE_VERBS:
                continue
            if user.startswith("system:apiserver") or (created_by_fake and user == kube.ADMIN_USER):
                continue
            if "dryRun=All" in uri or _NOT_WRITES.search(uri.split("?")[0] + "?"):
                continue
            count += 1
    return count


# One line per host in the recap: "build-1   : ok=12   changed=0    unreachable=0 ...".
_RECAP_LINE = re.compile(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)", re.MULTILINE)


def _parse_recap(output: str) -> int | None:
    """changed= summed over every host of the last PLAY RECAP (one line per build cluster
    host plus localhost once the playbooks run clusters as hosts), None without a recap."""
    if "PLAY RECAP" not in output:
        return None
    counts = _RECAP_LINE.findall(output.rsplit("PLAY RECAP", 1)[1])
    return sum(int(c) for c in counts) if counts else None


def _sandbox_pids(state: Path) -> list[int]:
    pids = [c.pid for c in kube.list_clusters(state)]
    try:
        pids.append(int((state / "gcp" / "pid").read_text(encoding="utf-8").strip()))
    except (OSError, ValueError):
        pass
    return pids


def _proc_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user+sys) so far of each live process (the launcher embeds etcd, so an
    apiserver is one process)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15)
    return out


def _cpu_since(state: Path, before: dict[int, float]) -> float:
    # Processes started meanwhile (clusters created by the run) count from zero.
    after = _proc_cpu(_sandbox_pids(state))
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sandbox_load(count: int, state: Path) -> SandboxLoad:
    from .bench import rss_mb  # pylint: disable=import-outside-toplevel

    pids = _sandbox_pids(state)
    before = _proc_cpu(pids)
    time.sleep(IDLE_SAMPLE)
    idle = _cpu_since(state, before) / IDLE_SAMPLE
    rss = 0.0
    for pid in pids:
        try:
            rss += rss_mb(pid)
        except (OSError, RuntimeError):
            continue
    return SandboxLoad(count, len(kube.list_clusters(state)), rss, idle, _mem_available_mib())


def _measure(name: str, count: int, argv: list[str], env: dict, state: Path, probe_dir: Path,
             log_dir: Path) -> tuple[Run, str]:
    probe_log = log_dir / f"probe-{count}-{re.sub(r'[^a-z0-9]+', '-', name)}.jsonl"
    probe_log.unlink(missing_ok=True)
    run_env = os.environ | env | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(probe_dir), os.environ.get("PYTHONPATH")])),
        "PROW_BENCH_PROBE": str(probe_log),
    }
    offsets = _log_sizes(state)
    sandbox0 = _proc_cpu(_sandbox_pids(state))
    cpu0, t0 = _cpu(), time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    sandbox_cpu = _cpu_since(state, sandbox0)
    (log_dir / f"{probe_log.stem.replace('probe-', 'out-')}.log").write_text(proc.stdout, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"bench: {name} ({count} clusters) failed (exit {proc.returncode}):\n"
                           + "\n".join(proc.stdout.splitlines()[-40:]))
    time.sleep(AUDIT_SETTLE)
    run = Run(count, name, wall, cpu, changed=_parse_recap(proc.stdout), sandbox_cpu=sandbox_cpu)

    for req in _new_lines(state / "gcp" / "requests.jsonl", offsets):
        if req.get("service") in AUTH_SERVICES:
            run.gcp_tokens += 1
        elif req.get("write"):
            run.gcp_writes += 1
        else:
            run.gcp_reads += 1
    run.k8s_writes = _k8s_audit_writes(state, offsets)

    gcp_port = urlparse_port(json.loads(Path(env["GCP_API_ENDPOINTS"]).read_text(encoding="utf-8"))["iam"])
    records = _new_lines(probe_log, {})
    for rec in records:
        if rec["kind"] == "proc" and rec.get("module"):
            short = rec["module"].rsplit(".", 1)[-1]
            run.module_procs += 1
            run.module_seconds += rec["end"] - rec["start"]
            run.modules[short] += 1
            run.module_time[short] += rec["end"] - rec["start"]
        elif rec["kind"] == "http":
            host, _, port = rec["host"].rpartition(":")
            if host not in ("127.0.0.1", "localhost"):
                run.external += 1  # e.g. google-auth's regional access boundary lookup
            elif int(port) != gcp_port:
                path = rec["url"].split("?")[0]
                if rec["method"] in _K8S_WRITE_METHODS and "dryRun=All" not in rec["url"] \
                        and not _NOT_WRITES.search(path + "?"):
                    run.k8s_writes_client += 1
                else:
                    run.k8s_reads += 1
    return run, proc.stdout


def urlparse_port(url: str) -> int:
    from urllib.parse import urlparse  # pylint: disable=import-outside-toplevel

    return urlparse(url).port


# ------------------------------------------------------------------ scenarios


def _ansible(playbook: str, vars_file: Path, *extra: str) -> list[str]:
    return [_venv_bin("ansible-playbook"), str(REPO / "playbooks" / playbook), "-e", f"@{vars_file}", *extra]


def parse_latency(value: str) -> dict[str, float]:
    """``--latency``: seconds of a GKE cluster create ("60"; "0": none), or the fake's
    ``gke_operation_latency`` form ("CREATE_CLUSTER=60,UPGRADE_NODES=10")."""
    from .gcp.state import parse_operation_latency  # pylint: disable=import-outside-toplevel

    try:
        seconds = float(value)
    except ValueError:
        return parse_operation_latency(value)
    return parse_operation_latency({"CREATE_CLUSTER": seconds}) if seconds else {}


def _latency_label(latency: dict[str, float]) -> str:
    if not latency:
        return ""
    if set(latency) == {"CREATE_CLUSTER"}:
        return f" (GKE create {latency['CREATE_CLUSTER']:g} s)"
    return " (GKE latency " + ", ".join(f"{k} {v:g} s" for k, v in latency.items()) + ")"


def bench_clusters(count: int, work: Path, probe_dir: Path, ansible_env: dict,
                   latency: dict[str, float] | None = None,
                   scenarios: tuple[str, ...] = SCENARIOS) -> tuple[list[Run], SandboxLoad]:
    latency = dict(latency or {})
    state = work / f"sandbox-{count}"
    state.mkdir(parents=True)
    log_dir = work / "logs"
    log_dir.mkdir(exist_ok=True)
    runs: list[Run] = []
    try:
        print(f"bench: {count} cluster(s): starting a sandbox in {state}"
              + (f", gke_operation_latency {latency}" if latency else ""), flush=True)
        env = _start_sandbox(state, latency) | {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")} | ansible_env
        data = _vars(count, state)
        vars_file = state / "bench-vars.yml"
        vars_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        floor_cfg = state / "floor.json"
        floor_cfg.write_text(json.dumps(_floor_config(data, env), indent=2), encoding="utf-8")

        steps = [("onboard, first" + _latency_label(latency), _ansible("onboard.yml", vars_file), None)]
        if "noop" in scenarios:
            steps.append(("onboard, no-op", _ansible("onboard.yml", vars_file), "onboard"))
        if "rotate" in scenarios:
            steps += [
                ("rotate, not due", _ansible("rotate.yml", vars_file), "rotate"),
                ("rotate, forced", _ansible("rotate.yml", vars_file, "-e", "force_rotation=true"), None),
            ]
        floors: dict[str, Run] = {}
        load = None
        for name, argv, floor_mode in steps:
            run, _ = _measure(name, count, argv, env, state, probe_dir, log_dir)
            # Only the first onboarding makes GKE operations; the switch stays set for all.
            run.latency = latency
            print(f"bench:   {name}: {run.wall:.1f} s, {run.module_procs} module processes, "
                  f"changed={run.changed}, sandbox CPU {run.sandbox_cpu:.1f} s", flush=True)
            if load is None:
                load = sandbox_load(count, state)
                print(f"bench:   sandbox idle: {load.apiservers} apiservers, RSS {load.rss_mib:.0f} MiB, "
                      f"CPU {load.idle_cpu:.0%} of a core, {load.mem_available_mib:.0f} MiB available",
                      flush=True)
            if floor_mode:
                floor_argv = [sys.executable, "-m", "prow_sandbox.bench_floor", "--mode", floor_mode, str(floor_cfg)]
                samples = [_measure(f"floor, {floor_mode}", count, floor_argv, env, state, probe_dir, log_dir)[0]
                           for _ in range(FLOOR_REPEATS)]
                floor = sorted(samples, key=lambda r: r.wall)[len(samples) // 2]
                floor.name = f"floor: bare script, reads of '{name}'"
                floor.note = f"median of {FLOOR_REPEATS}: " + ", ".join(f"{s.wall:.2f}" for s in samples) + " s"
                run.floor_wall = floor.wall
                floors[name] = floor
                print(f"bench:   {floor.name}: {floor.wall:.2f} s", flush=True)
            runs.append(run)
        for name in list(floors):
            runs.append(floors[name])
    finally:
        _stop_sandbox(state)
    assert load is not None  # the first onboarding always runs
    return runs, load


def fixed_cost(work: Path, probe_dir: Path) -> Run:
    """ansible-playbook with one debug task: what every playbook run costs before any task."""
    playbook = work / "fixed-cost.yml"
    playbook.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n"
        "  tasks:\n    - ansible.builtin.debug: {msg: fixed cost}\n", encoding="utf-8")
    state = work / "fixed-cost"
    state.mkdir(exist_ok=True)
    (state / "gcp").mkdir(exist_ok=True)
    env = {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "GCP_API_ENDPOINTS": str(state / "endpoints.json"),
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"}
    (state / "endpoints.json").write_text('{"iam": "http://127.0.0.1:1"}', encoding="utf-8")
    log_dir = work / "logs"
    log_dir.mkdir(exist_ok=True)
    run, _ = _measure("ansible-playbook, one debug task", 0, [_venv_bin("ansible-playbook"), str(playbook)],
                      env, state, probe_dir, log_dir)
    return run


# ------------------------------------------------------------------ report


def _fmt_ratio(run: Run) -> str:
    return f"{run.wall / run.floor_wall:.1f}×" if run.floor_wall else ""


def table(runs: list[Run]) -> str:
    head = ("| clusters | run | wall s | CPU s | sandbox CPU s | module tasks | GCP reads | GCP writes "
            "| token calls | K8s reads | K8s writes | changed | × floor |")
    lines = [head, "|" + "|".join(["---"] * 13) + "|"]
    for r in runs:
        is_floor = r.name.startswith("floor")
        lines.append("| {c} | {n} | {w:.1f} | {cpu:.1f} | {scpu} | {m} | {gr} | {gw} | {gt} | {kr} | {kw} | {ch} "
                     "| {ratio} |".format(
                         c=r.clusters or "–", n=r.name, w=r.wall, cpu=r.cpu,
                         scpu=f"{r.sandbox_cpu:.1f}" if r.clusters else "",
                         m="0 (1 process)" if is_floor else r.module_procs,
                         gr=r.gcp_reads, gw=r.gcp_writes, gt=r.gcp_tokens, kr=r.k8s_reads,
                         kw=r.k8s_writes if r.k8s_writes == r.k8s_writes_client or is_floor
                         else f"{r.k8s_writes} (client: {r.k8s_writes_client})",
                         ch="" if r.changed is None else r.changed,
                         ratio="1.0×" if is_floor else _fmt_ratio(r)))
    return "\n".join(lines)


def load_table(loads: list[SandboxLoad]) -> str:
    lines = ["| clusters | apiservers | RSS of the sandbox MiB | idle CPU (one core = 100 %) | MemAvailable MiB |",
             "|---|---|---|---|---|"]
    lines += [f"| {x.clusters} | {x.apiservers} | {x.rss_mib:.0f} | {x.idle_cpu:.0%} | {x.mem_available_mib:.0f} |"
              for x in loads]
    return "\n".join(lines)


def _find(runs: list[Run], count: int, prefix: str) -> Run | None:
    return next((r for r in runs if r.clusters == count and r.name.startswith(prefix)), None)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def targets(runs: list[Run]) -> list[str]:
    """Issue #13's targets as markdown list lines (met / NOT met); only those the runs allow."""
    lines = []
    many, one, limit = FIRST_OVERLAP_TARGET
    first_many, first_one = _find(runs, many, "onboard, first"), _find(runs, one, "onboard, first")
    if first_many and first_one:
        ratio = first_many.wall / first_one.wall
        if first_many.latency and first_many.latency == first_one.latency:
            lines.append(f"- {_verdict(ratio <= limit)}: first onboarding{_latency_label(first_one.latency)}, "
                         f"{many} clusters {first_many.wall:.1f} s vs {one} {first_one.wall:.1f} s = "
                         f"{ratio:.2f}× (target ≤ {limit}×)")
        else:
            lines.append(f"- not checked: first onboarding {many} vs {one} = {ratio:.2f}×, but the target "
                         f"needs the same GKE latency for both (here {first_many.latency or 'none'} and "
                         f"{first_one.latency or 'none'})")
    for count in sorted({r.clusters for r in runs if r.name == "onboard, no-op"}):
        noop = _find(runs, count, "onboard, no-op")
        assert noop is not None and noop.floor_wall
        ratio = noop.wall / noop.floor_wall
        today = NOOP_FLOOR_TODAY.get(count)
        verdict = _verdict(ratio <= today) if today else "no target"
        lines.append(f"- {verdict}: no-op, {count} cluster(s): {ratio:.1f}× the floor"
                     + (f" (target: no worse than before issue #13, {today}×)" if today
                        else " (no measurement from before issue #13)"))
    many, one, limit = NOOP_SCALE_TARGET
    noop_many, noop_one = _find(runs, many, "onboard, no-op"), _find(runs, one, "onboard, no-op")
    if noop_many and noop_one:
        ratio = noop_many.wall / noop_one.wall
        lines.append(f"- {_verdict(ratio <= limit)}: no-op, {many} clusters {noop_many.wall:.1f} s vs {one} "
                     f"{noop_one.wall:.1f} s = {ratio:.2f}× (target ≤ {limit}×)")
    idle = [r for r in runs if r.name.endswith(("no-op", "not due"))]
    dirty = [f"{r.name} ({r.clusters}): changed={r.changed}, GCP writes {r.gcp_writes}, K8s writes "
             f"{r.k8s_writes} (client {r.k8s_writes_client})" for r in idle
             if r.changed or r.gcp_writes or r.k8s_writes or r.k8s_writes_client]
    if idle:
        lines.append(f"- {_verdict(not dirty)}: zero writes and changed=0 on every no-op run "
                     f"(no-op onboarding, rotation not due: {len(idle)})"
                     + ("; not: " + "; ".join(dirty) if dirty else ""))
    return lines


def module_table(runs: list[Run]) -> str:
    noop = [r for r in runs if r.name == "onboard, no-op"]
    if not noop:
        return ""
    modules = sorted({m for r in noop for m in r.modules}, key=lambda m: -sum(r.module_time[m] for r in noop))
    head = "| module | " + " | ".join(f"calls ({r.clusters})" for r in noop) + " | " + \
        " | ".join(f"process s ({r.clusters})" for r in noop) + " |"
    lines = [head, "|" + "|".join(["---"] * (1 + 2 * len(noop))) + "|"]
    for m in modules:
        lines.append(f"| {m} | " + " | ".join(str(r.modules[m]) for r in noop) + " | "
                     + " | ".join(f"{r.module_time[m]:.1f}" for r in noop) + " |")
    lines.append("| **all module processes** | " + " | ".join(str(r.module_procs) for r in noop) + " | "
                 + " | ".join(f"{r.module_seconds:.1f} of {r.wall:.1f} wall" for r in noop) + " |")
    return "\n".join(lines)


def _environment(load: tuple[float, float, float]) -> str:
    try:
        ansible = subprocess.run([_venv_bin("ansible-playbook"), "--version"], capture_output=True, text=True,
                                 check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        ansible = "ansible-playbook ?"
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs, load average before "
            f"{load[0]:.2f}; Python {platform.python_version()}; {ansible.strip()}; "
            f"Kubernetes {build.kube_version()}")


def _forks(ansible_env: dict) -> str:
    """The forks ansible-playbook uses with this environment (ansible.cfg, ANSIBLE_FORKS)."""
    env = os.environ | {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")} | ansible_env
    try:
        dump = subprocess.run([_venv_bin("ansible-config"), "dump", "--format", "json"], cwd=REPO, env=env,
                              capture_output=True, text=True, check=True).stdout
        entry = next(e for e in json.loads(dump) if e.get("name") == "DEFAULT_FORKS")
    except (OSError, ValueError, StopIteration, subprocess.CalledProcessError):
        return "forks ?"
    return f"forks {entry['value']} ({entry.get('origin', '?')})"


def settings_line(ansible_env: dict, latency: dict[str, float], latency_counts: tuple[int, ...]) -> str:
    parts = [_forks(ansible_env)]
    parts += [f"{k}={v}" for k, v in ansible_env.items()] or ["ansible.cfg as is"]
    if latency and latency_counts:
        parts.append("GKE operation latency " + ", ".join(f"{k} {v:g} s" for k, v in latency.items())
                     + f" for {', '.join(map(str, latency_counts))} cluster(s), none for the others")
    else:
        parts.append("no GKE operation latency")
    return "; ".join(parts)


def main(counts: list[int], output: Path | None, keep: bool, ansible_env: dict,
         latency: dict[str, float] | None = None, latency_counts: tuple[int, ...] = DEFAULT_LATENCY_COUNTS,
         scenarios: tuple[str, ...] = SCENARIOS) -> int:
    latency = DEFAULT_LATENCY if latency is None else latency
    load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="prow-sandbox-bench-"))
    probe_dir = work / "probe"
    probe_dir.mkdir()
    shutil.copy(Path(__file__).with_name("bench_probe.py"), probe_dir / "sitecustomize.py")
    runs: list[Run] = []
    loads: list[SandboxLoad] = []
    settings = settings_line(ansible_env, latency, tuple(c for c in latency_counts if c in counts))
    print(f"bench: {settings}", flush=True)
    try:
        build.ensure_binary()
        runs.append(fixed_cost(work, probe_dir))
        for count in counts:
            count_runs, count_load = bench_clusters(count, work, probe_dir, ansible_env,
                                                    latency if count in latency_counts else {}, scenarios)
            runs.extend(count_runs)
            loads.append(count_load)
    except (RuntimeError, kube.ClusterStartError, subprocess.CalledProcessError) as exc:
        print(exc, file=sys.stderr)
        print(f"bench: logs kept in {work}", file=sys.stderr)
        return 1
    report = table(runs)
    checks = "\n".join(targets(runs))
    sandbox = load_table(loads)
    modules = module_table(runs)
    env_line = _environment(load)
    print()
    print(report)
    print()
    print(checks)
    print()
    print(sandbox)
    print()
    print(modules)
    print(f"\n{env_line}; {settings}")
    if output:
        output.write_text(_document(report, checks, sandbox, modules, env_line, settings), encoding="utf-8")
        print(f"bench: wrote {output}")
    if keep:
        print(f"bench: state, logs and probe records kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _document(report: str, checks: str, sandbox: str, modules: str, env_line: str, settings: str) -> str:
    return f"""# Benchmarks (`make bench`)

Written by `prow-sandbox bench` (`sandbox/prow_sandbox/bench_onboard.py`); do not edit by
hand, rerun it (`prow-sandbox bench --counts 1,5 --latency 60 --scenarios noop` runs pieces).
Each cluster count runs in a fresh sandbox of its own (a `prow` apiserver, the GCP fake, one
real apiserver per GKE cluster created through the fake).

Latest run: {env_line}; {settings}.

{report}

Targets (issue #13; ratios from this one run; the bench fails only when a playbook does):

{checks}

* **wall s / CPU s**: the whole `ansible-playbook` (or floor script) process; CPU is user+sys
  of it and every process it started. The machine may be shared: compare CPU when wall
  times look noisy.
* **sandbox CPU s**: CPU time the sandbox's own processes (its apiservers and the GCP fake)
  spent during the run, on the same cores: the other side of every API call, plus the idle
  work of every apiserver (see the load table below).
* **onboard, first (GKE create N s)**: the fake's GKE operations of that type last N s at
  least, as a real create takes minutes (`gke_operation_latency`; the apiserver starts at
  once, the operation is DONE at max(N, apiserver ready)). Clusters created one after the
  other pay N each; overlapping creates pay it about once.
* **module tasks**: Ansible module processes started (each a new Python interpreter that
  imports its client libraries; an unchanged `copy` runs `stat` and `file`).
* **GCP reads / writes**: the fake's request log, without **token calls** (oauth2/sts:
  one access token per module process that talks to Google).
* **K8s writes**: the apiservers' audit logs (write verbs, without `dryRun=All`,
  TokenReviews, access reviews, the apiserver's and the fake's own writes).
  **K8s reads**: counted on the client side (the audit policy logs writes only): every HTTP
  request to an apiserver, including dry-run PATCHes and TokenReviews.
* **changed**: summed over every host line of the play recap.
* **× floor**: wall time over the floor's, a bare Python script (`prow_sandbox.bench_floor`,
  official clients, one process, one token) making the reads that run cannot avoid.

## The sandbox's own load (idle, after the first onboarding)

{sandbox}

RSS of every sandbox process (each apiserver embeds its etcd) and their CPU use over
{IDLE_SAMPLE:g} s with no playbook running. 20 build clusters are 20 real apiservers created
through the fake GKE API, as for 1 and 5: measured on 2026-12-02 at 5.5 GiB RSS for the 21
apiservers and about 30 % of one core idle, which 2 cores and 24 GiB carry (the **sandbox CPU
s** column shows what they take from a run). The alternative, kubeconfig-mode build clusters
sharing one apiserver, would need different names for everything onboarding creates in each
(namespace, service accounts, bindings) and would leave out the GKE reads a GKE cluster costs; not
worth it at that cost.

## Where the no-op run's time goes (module processes)

{modules}
"""
