"""``prow-sandbox bench``: onboarding, no-op re-run and rotation against a private sandbox.

A benchmark, not a test: it prints a markdown table (and writes it to ``docs/bench.md``)
and only fails when a playbook fails. For each cluster count (1 and 5 by default) it starts
a fresh sandbox of its own (a ``prow`` apiserver and the GCP fake, in a new state directory,
so nothing is shared with ``make sandbox`` or other runs), installs the real
External Secrets CRDs, writes a vars file with that many GKE build clusters, and runs:

1. ``onboard.yml`` on the empty world (first onboarding: creates the GKE clusters);
2. ``onboard.yml`` again (no-op: must report changed=0 and write nothing);
3. ``rotate.yml`` (tokens not due: what the periodic job does most of the time);
4. ``rotate.yml -e force_rotation=true`` (a rotation);
5. the floor: ``python -m prow_sandbox.bench_floor``, the reads of runs 2 and 3 in one bare
   process with the official clients (median of 3 runs);

plus once, ``ansible-playbook`` with a single debug task (the fixed cost of any playbook).

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
* module processes: each is a new interpreter that re-imports its client libraries.
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
    note: str = ""


# ------------------------------------------------------------------ sandbox


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def _start_sandbox(state: Path) -> dict:
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
    gcp = daemon.start(state)
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


def _parse_recap(output: str) -> int | None:
    match = re.search(r"changed=(\d+)", output.rsplit("PLAY RECAP", 1)[-1])
    return int(match.group(1)) if match else None


def _measure(name: str, count: int, argv: list[str], env: dict, state: Path, probe_dir: Path,
             log_dir: Path) -> tuple[Run, str]:
    probe_log = log_dir / f"probe-{count}-{re.sub(r'[^a-z0-9]+', '-', name)}.jsonl"
    probe_log.unlink(missing_ok=True)
    run_env = os.environ | env | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(probe_dir), os.environ.get("PYTHONPATH")])),
        "PROW_BENCH_PROBE": str(probe_log),
    }
    offsets = _log_sizes(state)
    cpu0, t0 = _cpu(), time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    (log_dir / f"{probe_log.stem.replace('probe-', 'out-')}.log").write_text(proc.stdout, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"bench: {name} ({count} clusters) failed (exit {proc.returncode}):\n"
                           + "\n".join(proc.stdout.splitlines()[-40:]))
    time.sleep(AUDIT_SETTLE)
    run = Run(count, name, wall, cpu, changed=_parse_recap(proc.stdout))

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


def bench_clusters(count: int, work: Path, probe_dir: Path, ansible_env: dict) -> list[Run]:
    state = work / f"sandbox-{count}"
    state.mkdir(parents=True)
    log_dir = work / "logs"
    log_dir.mkdir(exist_ok=True)
    runs: list[Run] = []
    try:
        print(f"bench: {count} cluster(s): starting a sandbox in {state}", flush=True)
        env = _start_sandbox(state) | {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")} | ansible_env
        data = _vars(count, state)
        vars_file = state / "bench-vars.yml"
        vars_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        floor_cfg = state / "floor.json"
        floor_cfg.write_text(json.dumps(_floor_config(data, env), indent=2), encoding="utf-8")

        steps = [
            ("onboard, first", _ansible("onboard.yml", vars_file), None),
            ("onboard, no-op", _ansible("onboard.yml", vars_file), "onboard"),
            ("rotate, not due", _ansible("rotate.yml", vars_file), "rotate"),
            ("rotate, forced", _ansible("rotate.yml", vars_file, "-e", "force_rotation=true"), None),
        ]
        floors: dict[str, Run] = {}
        for name, argv, floor_mode in steps:
            run, _ = _measure(name, count, argv, env, state, probe_dir, log_dir)
            print(f"bench:   {name}: {run.wall:.1f} s, {run.module_procs} module processes, "
                  f"changed={run.changed}", flush=True)
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
    return runs


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
    head = ("| clusters | run | wall s | CPU s | module tasks | GCP reads | GCP writes | token calls "
            "| K8s reads | K8s writes | changed | × floor |")
    lines = [head, "|" + "|".join(["---"] * 12) + "|"]
    for r in runs:
        is_floor = r.name.startswith("floor")
        lines.append("| {c} | {n} | {w:.1f} | {cpu:.1f} | {m} | {gr} | {gw} | {gt} | {kr} | {kw} | {ch} | {ratio} |".format(
            c=r.clusters or "–", n=r.name, w=r.wall, cpu=r.cpu,
            m="0 (1 process)" if is_floor else r.module_procs,
            gr=r.gcp_reads, gw=r.gcp_writes, gt=r.gcp_tokens, kr=r.k8s_reads,
            kw=r.k8s_writes if r.k8s_writes == r.k8s_writes_client or is_floor
            else f"{r.k8s_writes} (client: {r.k8s_writes_client})",
            ch="" if r.changed is None else r.changed,
            ratio="1.0×" if is_floor else _fmt_ratio(r)))
    return "\n".join(lines)


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


def main(counts: list[int], output: Path | None, keep: bool, ansible_env: dict) -> int:
    load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="prow-sandbox-bench-"))
    probe_dir = work / "probe"
    probe_dir.mkdir()
    shutil.copy(Path(__file__).with_name("bench_probe.py"), probe_dir / "sitecustomize.py")
    runs: list[Run] = []
    try:
        build.ensure_binary()
        runs.append(fixed_cost(work, probe_dir))
        for count in counts:
            runs.extend(bench_clusters(count, work, probe_dir, ansible_env))
    except (RuntimeError, kube.ClusterStartError, subprocess.CalledProcessError) as exc:
        print(exc, file=sys.stderr)
        print(f"bench: logs kept in {work}", file=sys.stderr)
        return 1
    for run in runs:
        if run.name.endswith(("no-op", "not due")) and (run.changed or run.gcp_writes or run.k8s_writes
                                                        or run.k8s_writes_client):
            print(f"bench: WARNING: {run.name} ({run.clusters} clusters) is not a no-op: changed={run.changed}, "
                  f"GCP writes {run.gcp_writes}, K8s writes {run.k8s_writes}", file=sys.stderr)
    report = table(runs)
    modules = module_table(runs)
    env_line = _environment(load)
    settings = ", ".join(f"{k}={v}" for k, v in ansible_env.items()) or "ansible.cfg as is"
    print()
    print(report)
    print()
    print(modules)
    print(f"\n{env_line}; {settings}")
    if output:
        output.write_text(_document(report, modules, env_line, settings), encoding="utf-8")
        print(f"bench: wrote {output}")
    if keep:
        print(f"bench: state, logs and probe records kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _document(report: str, modules: str, env_line: str, settings: str) -> str:
    return f"""# Benchmarks (`make bench`)

Written by `prow-sandbox bench` (`sandbox/prow_sandbox/bench_onboard.py`); do not edit by
hand, rerun it. Each cluster count runs in a fresh sandbox of its own (a `prow` apiserver,
the GCP fake, one real apiserver per GKE cluster created through the fake).

Latest run: {env_line}; {settings}.

{report}

* **wall s / CPU s**: the whole `ansible-playbook` (or floor script) process; CPU is user+sys
  of it and every process it started. The machine may be shared: compare CPU when wall
  times look noisy.
* **module tasks**: Ansible module processes started (each a new Python interpreter that
  imports its client libraries; an unchanged `copy` runs `stat` and `file`).
* **GCP reads / writes**: the fake's request log, without **token calls** (oauth2/sts:
  one access token per module process that talks to Google).
* **K8s writes**: the apiservers' audit logs (write verbs, without `dryRun=All`,
  TokenReviews, access reviews, the apiserver's and the fake's own writes).
  **K8s reads**: counted on the client side (the audit policy logs writes only): every HTTP
  request to an apiserver, including dry-run PATCHes and TokenReviews.
* **× floor**: wall time over the floor's, a bare Python script (`prow_sandbox.bench_floor`,
  official clients, one process, one token) making the reads that run cannot avoid.
  Target: the no-op onboarding within 3×.

## Where the no-op run's time goes (module processes)

{modules}
"""
