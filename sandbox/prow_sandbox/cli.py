"""``prow-sandbox``: build the launcher, start/stop the sandbox, show what runs.

``up`` starts the ``prow`` and ``build`` clusters and the GCP fake (when
``prow_sandbox.gcp.daemon`` exists) and writes ``<state>/env`` and
``<state>/endpoints.json``; ``down`` stops every process of the state directory by PID and
fails if any is left. Both are idempotent.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from . import assets, bench, bench_onboard, build, kube, prow

SANDBOX_CLUSTERS = ("prow", "build")


def _gcp_daemon() -> ModuleType | None:
    """The GCP fake's daemon module, or None if this checkout does not have it.

    Only a missing module is tolerated; an ImportError raised inside an existing module is
    a bug and propagates.
    """
    if importlib.util.find_spec("prow_sandbox.gcp") is None:
        return None
    if importlib.util.find_spec("prow_sandbox.gcp.daemon") is None:
        return None
    return importlib.import_module("prow_sandbox.gcp.daemon")


def _write_atomic(path: Path, text: str) -> None:
    # Readers (a shell sourcing env, a test loading endpoints.json) never see half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_env(state: Path, clusters: dict[str, kube.Cluster], gcp: dict | None) -> None:
    exports = {
        "SANDBOX_DIR": str(state),
        "PROW_KUBECONFIG": str(clusters["prow"].kubeconfig),
        "BUILD_KUBECONFIG": str(clusters["build"].kubeconfig),
    }
    if gcp:
        endpoints = state / "endpoints.json"
        _write_atomic(endpoints, json.dumps(gcp["endpoints"], indent=2, sort_keys=True) + "\n")
        exports |= {
            "SANDBOX_GCP_PROJECT": gcp["project"],
            "GOOGLE_APPLICATION_CREDENTIALS": str(gcp["credentials_file"]),
            "GCP_API_ENDPOINTS": str(endpoints),
        }
    lines = ["# Written by `prow-sandbox up`; source it: . .sandbox/env"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in exports.items()]
    _write_atomic(state / "env", "\n".join(lines) + "\n")


def cmd_up(state: Path, gcp_config: dict | None = None) -> int:
    """Start (or find running) the sandbox clusters and the GCP fake; write env files.

    ``gcp_config``: the fake's behaviour switches (``POST /_fake/config``), e.g.
    ``{"gke_operation_latency": "CREATE_CLUSTER=60"}``."""
    daemon = _gcp_daemon()
    if daemon is not None and gcp_config:
        daemon.check_config(gcp_config)  # before starting anything
    build.ensure_binary()
    # Two apiservers start faster side by side than one after the other on 2 cores
    # (much of the start is waiting on post-start hooks, not CPU).
    with ThreadPoolExecutor(len(SANDBOX_CLUSTERS)) as pool:
        started = pool.map(lambda name: kube.start_cluster(name, state), SANDBOX_CLUSTERS)
        clusters = {c.name: c for c in started}
    for c in clusters.values():
        print(f"cluster {c.name}: {c.server} pid {c.pid} kubeconfig {c.kubeconfig}")
    gcp = None
    if daemon is None:
        print("GCP fake: prow_sandbox.gcp.daemon is not available; skipped "
              "(env has no SANDBOX_GCP_PROJECT / GCP_API_ENDPOINTS)")
    else:
        gcp = daemon.start(state, gcp_config)
        print(f"GCP fake: pid {gcp['pid']} project {gcp['project']}"
              + "".join(f"; {k}={v}" for k, v in (gcp_config or {}).items()))
    _write_env(state, clusters, gcp)
    print(f"wrote {state / 'env'}; use it with: . {state / 'env'}")
    return 0


def _pid_running(pid_file: Path) -> int | None:
    """PID from ``pid_file`` if that process exists and is not a zombie."""
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    # Field 3 of /proc/PID/stat is the state; it follows the ")" closing the command name.
    return None if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid


def cmd_down(state: Path) -> int:
    """Stop Prow, the GCP fake and every cluster of the state directory; verify none is left."""
    if prow.stop(state):
        print("stopped Prow")
    daemon = _gcp_daemon()
    if daemon is not None:
        daemon.stop(state)
    for name in kube.cluster_names(state):
        if kube.stop_cluster(name, state):
            print(f"stopped cluster {name}")
    left = [f"cluster {c.name} (pid {c.pid})" for c in kube.list_clusters(state)]
    gcp_pid = _pid_running(state / "gcp" / "pid")
    if gcp_pid:
        left.append(f"GCP fake (pid {gcp_pid})")
    prow_pid = _pid_running(state / "prow" / "pid")
    if prow_pid:
        left.append(f"Prow supervisor (pid {prow_pid})")
    if left:
        print(f"prow-sandbox down: still running: {', '.join(left)}", file=sys.stderr)
        return 1
    # A stale env file would point the next shell at dead clusters.
    for stale in ("env", "endpoints.json"):
        (state / stale).unlink(missing_ok=True)
    print("sandbox is down")
    return 0


def cmd_prow(state: Path, args: argparse.Namespace) -> int:
    """``prow up|down|job``."""
    if args.prow_command == "up":
        pod = prow.start(state)
        print(f"Prow: running, pid {pod['pid']}, restarts {pod['restarts']}; logs in {state / 'prow'}")
    elif args.prow_command == "down":
        print("stopped Prow" if prow.stop(state) else "Prow was not running")
    elif args.prow_command == "cluster-status":
        deadline = time.monotonic() + 180
        current = prow.cluster_status(state)
        while args.wait and (current is None or args.wait not in current) and time.monotonic() < deadline:
            time.sleep(2)
            current = prow.cluster_status(state)
        print(json.dumps(current, sort_keys=True))
        return 0 if current is not None and (not args.wait or args.wait in current) else 1
    elif args.prow_command == "wait":
        pod = prow.wait_loaded(state, args.cluster)
        print(f"Prow: running with {', '.join(prow.loaded_clusters(state))} (restarts {pod['restarts']})")
    else:
        name = prow.create_prowjob(state, args.cluster)
        if not args.wait:
            print(name)
            return 0
        job, pod = prow.job_pod(state, name)
        if pod is None:
            print(f"ProwJob {name}: {job['status']['state']}: {job['status'].get('description')}")
            return 1
        spec = pod["spec"]
        print(f"ProwJob {name} (cluster {job['spec']['cluster']}): {job['status']['state']}, "
              f"plank created pod {pod['metadata']['namespace']}/{pod['metadata']['name']} ({pod['status']['phase']})")
        print(f"  serviceAccountName: {spec.get('serviceAccountName')}; volumes: "
              f"{', '.join(v['name'] for v in spec.get('volumes', []))}")
    return 0


def cmd_status(state: Path) -> int:
    """Print every cluster of the state directory and the GCP fake; exit 0 either way."""
    names = kube.cluster_names(state)
    if not names:
        print(f"no clusters in {state}")
    for name in names:
        cluster = kube.get_cluster(name, state)
        if cluster is None:
            print(f"cluster {name}: stopped")
            continue
        health = "ready" if kube.is_ready(cluster) else "NOT READY"
        print(f"cluster {name}: {health} {cluster.server} pid {cluster.pid} "
              f"kubeconfig {cluster.kubeconfig}")
    gcp_pid = _pid_running(state / "gcp" / "pid")
    print(f"GCP fake: running, pid {gcp_pid}" if gcp_pid else "GCP fake: not running")
    pod = prow.pod_status(state) if _pid_running(state / "prow" / "pid") else None
    print(f"Prow: {pod['state']}, pid {pod['pid']}, restarts {pod['restarts']}" if pod else "Prow: not running")
    env = state / "env"
    print(f"env: {env}" if env.exists() else "env: not written")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prow-sandbox`` console script."""
    parser = argparse.ArgumentParser(prog="prow-sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="state directory (default: $SANDBOX_DIR or <repo>/.sandbox)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the kube-sandbox launcher and Prow if needed; print their paths")
    assets_parser = sub.add_parser(
        "assets", help="fetch the pinned external files (CRDs, Prow manifests) if needed; print their paths")
    assets_parser.add_argument("names", nargs="*", metavar="ASSET",
                               help=f"assets to print (default: fetch all); one of {', '.join(sorted(assets.ASSETS))}")
    up = sub.add_parser("up", help="start the prow and build clusters and the GCP fake")
    up.add_argument("--gcp-config", action="append", default=[], metavar="KEY=VALUE",
                    help="a switch of the GCP fake's POST /_fake/config, from the start (a running "
                         "fake gets it at once), e.g. gke_operation_latency=CREATE_CLUSTER=60")
    sub.add_parser("down", help="stop everything in the state directory")
    sub.add_parser("status", help="show what runs")
    prow_parser = sub.add_parser("prow", help="the sandbox's Prow (prow-controller-manager with plank)")
    prow_sub = prow_parser.add_subparsers(dest="prow_command", required=True)
    prow_sub.add_parser("up", help="start Prow against the running sandbox (idempotent); wait until ready")
    prow_sub.add_parser("down", help="stop Prow")
    job = prow_sub.add_parser("job", help="create the sandbox's decorated ProwJob for a cluster; print its name")
    job.add_argument("cluster", help="a build cluster alias with a generated decoration entry, or default")
    job.add_argument("--wait", action="store_true", help="wait for plank's verdict and print where the pod is")
    status = prow_sub.add_parser("cluster-status", help="plank's build-cluster status file (from the fake's bucket)")
    status.add_argument("--wait", metavar="ALIAS", help="wait (up to 3 min) until the file names ALIAS")
    wait = prow_sub.add_parser("wait", help="wait until Prow runs with a build cluster loaded")
    wait.add_argument("cluster")
    start = sub.add_parser("start-cluster", help="start one named cluster")
    start.add_argument("name")
    start.add_argument("--authn-webhook-url", help="token authentication webhook (http URL)")
    stop = sub.add_parser("stop-cluster", help="stop one named cluster")
    stop.add_argument("name")
    bench_parser = sub.add_parser("bench-kube", help="time to /readyz and RSS per cluster")
    bench_parser.add_argument("--clusters", type=int, default=2)
    onboard_bench = sub.add_parser(
        "bench", help="onboard (with GKE latency), no-op re-run and rotation for 1, 5 and 20 clusters "
                      "vs a bare-script floor; checks issue #13's targets")
    onboard_bench.add_argument("--counts", "--clusters", dest="counts",
                               default=",".join(map(str, bench_onboard.DEFAULT_COUNTS)),
                               help="comma-separated cluster counts, each in a fresh sandbox (default %(default)s)")
    onboard_bench.add_argument("--latency", default="60", metavar="SECONDS|TYPE=SECONDS,...",
                               help="GKE operation latency of the first onboarding: seconds of a cluster "
                                    "create, or per operation type as gke_operation_latency takes it; 0: none "
                                    "(default %(default)s)")
    onboard_bench.add_argument("--latency-counts", default=",".join(map(str, bench_onboard.DEFAULT_LATENCY_COUNTS)),
                               help="the counts whose sandbox gets the latency (default %(default)s; the "
                                    "others create clusters at the fake's pace)")
    onboard_bench.add_argument("--scenarios", default=",".join(bench_onboard.SCENARIOS),
                               help=f"of {', '.join(bench_onboard.SCENARIOS)}, after the first onboarding "
                                    "(which always runs) (default %(default)s)")
    onboard_bench.add_argument("--output", type=Path, default=bench_onboard.DEFAULT_OUTPUT,
                               help="markdown file for the results (default docs/bench.md)")
    onboard_bench.add_argument("--no-write", action="store_true", help="print only")
    onboard_bench.add_argument("--keep", action="store_true", help="keep logs and probe records")
    onboard_bench.add_argument("--ansible-env", action="append", default=[], metavar="KEY=VALUE",
                               help="extra environment for ansible-playbook, e.g. ANSIBLE_PIPELINING=1")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="prow-sandbox: %(message)s")
    # google-auth's regional-access-boundary lookup cannot reach Google offline; it only warns.
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: record.levelno >= logging.ERROR
                          or not record.name.startswith(("urllib3", "google.")))
    state = kube.default_state_dir() if args.state_dir is None else args.state_dir
    state = state.resolve()
    try:
        if args.command == "build":
            print(build.ensure_binary())
            print(build.ensure_prow_binaries())
            return 0
        if args.command == "assets":
            if args.names:
                for name in args.names:
                    print("\n".join(str(p) for p in assets.files(name)))
            else:
                for name, paths in assets.fetch_all().items():
                    print(f"{name}: {len(paths)} file(s) in {paths[0].parent}")
            return 0
        if args.command == "up":
            if any("=" not in kv for kv in args.gcp_config):
                parser.error("--gcp-config takes KEY=VALUE")
            return cmd_up(state, dict(kv.split("=", 1) for kv in args.gcp_config))
        if args.command == "down":
            return cmd_down(state)
        if args.command == "status":
            return cmd_status(state)
        if args.command == "prow":
            return cmd_prow(state, args)
        if args.command == "start-cluster":
            c = kube.start_cluster(args.name, state, authn_webhook_url=args.authn_webhook_url)
            print(json.dumps({"name": c.name, "server": c.server, "pid": c.pid,
                              "kubeconfig": str(c.kubeconfig), "ready_seconds": c.ready_seconds}))
            return 0
        if args.command == "stop-cluster":
            print(f"stopped {args.name}" if kube.stop_cluster(args.name, state)
                  else f"{args.name} was not running")
            return 0
        if args.command == "bench":
            scenarios = tuple(x for x in args.scenarios.split(",") if x)
            if set(scenarios) - set(bench_onboard.SCENARIOS):
                parser.error(f"--scenarios: of {', '.join(bench_onboard.SCENARIOS)}")
            try:
                latency = bench_onboard.parse_latency(args.latency)
            except (KeyError, TypeError, ValueError) as exc:
                parser.error(f"--latency: {exc}")
            return bench_onboard.main([int(n) for n in args.counts.split(",")],
                                      None if args.no_write else args.output, args.keep,
                                      dict(kv.split("=", 1) for kv in args.ansible_env), latency,
                                      tuple(int(n) for n in args.latency_counts.split(",") if n), scenarios)
        return bench.main(args.clusters)
    except (kube.ClusterStartError, assets.AssetError, RuntimeError) as exc:
        print(f"prow-sandbox {args.command}: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"prow-sandbox {args.command}: {shlex.join(exc.cmd)} failed (exit {exc.returncode})",
              file=sys.stderr)
        return 1
