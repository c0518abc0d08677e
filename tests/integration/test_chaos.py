"""Issue #16's faults and kills: onboarding survives them or fails cleanly, and converges.

For every scenario, against one sandbox (the GCP fake reset between scenarios, so each first run
creates everything, the GKE cluster included):

1. the first run of ``playbooks/onboard.yml`` meets the fault (API errors on every IAM policy, etag
   races, Secret Manager addVersion and GKE create failing before or after the write is applied), or
   is SIGKILLed after its k-th write; it either succeeds or fails with a clear message;
2. a re-run without faults succeeds (when the first run succeeded it must already be the no-op run);
3. the state (IAM bindings, Secret Manager versions, GKE clusters, the objects Prow reads) equals an
   uninterrupted run's, with no duplicate IAM member nor Secret Manager version;
4. one more run changes nothing and writes nothing.

Two runs at once (two build clusters, two vars files, one bucket) keep both job GSAs' bindings.

Long: marked ``chaos`` and run by ``make chaos`` (not by ``make test``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime, timezone

import pytest
import requests
import yaml
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account

from test_playbooks import BIN, REPO, VARS, changed_tasks, gcp_writes, kube_writes, recap, running_sandbox  # pylint: disable=import-error

pytestmark = pytest.mark.chaos

TOKEN_SERVICES = ("oauth2", "sts", "iamcredentials")
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
PROW_PROJECT = "prow-sandbox-prow"
BUILD_PROJECT = "prow-sandbox-build"
BUCKET = "prow-sandbox-results"
# Every IAM policy read and write of an onboarding, by where each service serves it.
POLICY_PATHS = {
    "project": r"/projects/[^/]+:(get|set)IamPolicy$",
    "service account": r"/serviceAccounts/[^/]+:(get|set)IamPolicy$",
    "bucket": r"/storage/v1/b/[^/]+/iam$",
    "secret": r"/secrets/[^/]+:(get|set)IamPolicy$",
}
POLICY_WRITES = {
    "project": r"/projects/[^/]+:setIamPolicy$",
    "service account": r"/serviceAccounts/[^/]+:setIamPolicy$",
    "bucket": r"/storage/v1/b/[^/]+/iam$",
    "secret": r"/secrets/[^/]+:setIamPolicy$",
}


def every_policy_call(*rules):
    """The rules on every policy endpoint (project, service account, bucket, secret), each its own rule.

    Rules matching one request fire in order: {429, times 2} then {503, times 2} answer four errors."""
    return [dict(rule, path=path) for path in POLICY_PATHS.values() for rule in rules]


def every_policy_write(**rule):
    return [dict(rule, path=path, method=method) for path, method in zip(POLICY_WRITES.values(), ("POST", "POST", "PUT", "POST"))]


# Each scenario is a whole onboarding from the seeded world, so some are combined: both statuses in
# one run, an error before the write and then one after it in one run (the second attempt meets it).
SCENARIOS = {
    "iam-429-and-503-twice": every_policy_call(dict(status=429, times=2), dict(status=503, times=2)),
    # 0.3 of every policy call fails over the whole run. The fake's random sequence restarts at each
    # reset, so a given rate hits the same calls of a run every time (and, seeded, it does hit some).
    "iam-429-rate": every_policy_call(dict(status=429, rate=0.3, times=None)),
    "iam-503-rate": every_policy_call(dict(status=503, rate=0.3, times=None)),
    "iam-etag-race": every_policy_write(kind="etag_race", times=2),
    "iam-set-503-after-apply": every_policy_write(status=503, after=True, times=1),
    "addversion-503-before-then-after-apply": [dict(status=503, method="POST", path=r":addVersion$", times=1),
                                               dict(status=503, method="POST", path=r":addVersion$", after=True, times=1)],
    "gke-create-503-before-then-after-apply": [dict(status=503, method="POST", service="container", path=r"/clusters$", times=1),
                                               dict(status=503, method="POST", service="container", path=r"/clusters$",
                                                    after=True, times=1)],
}


# ---------------------------------------------------------------- the sandbox and its fake


class Sandbox:
    """One sandbox for the module: ansible-playbook runs, the fake's admin API, state snapshots."""

    def __init__(self, state, env):
        self.state, self.env = state, env
        endpoints = json.loads((state / "endpoints.json").read_text())
        self.endpoints = endpoints
        self.admin = endpoints["oauth2"].rsplit("/", 1)[0] + "/_fake"
        self.http = None

    # -- the fake's admin API
    def reset(self):
        requests.post(f"{self.admin}/reset", timeout=120).raise_for_status()
        self.http = None  # the seed is new: so are the operator's key and tokens
        for leftover in ("out",):
            subprocess.run(["rm", "-rf", str(self.state / leftover)], check=True)

    def inject(self, rules):
        """Add the rules; their ids."""
        ids = []
        for rule in rules:
            answer = requests.post(f"{self.admin}/faults", json=rule, timeout=10)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        return ids

    def fired(self, ids):
        """Those of the rules ``ids`` that hit a request (a rule used up is gone from the list)."""
        active = {f["id"]: f for f in requests.get(f"{self.admin}/faults", timeout=10).json()["faults"]}
        return [i for i in ids if i not in active or active[i]["hits"] > 0]

    def clear_faults(self):
        requests.delete(f"{self.admin}/faults", timeout=10).raise_for_status()

    def mark(self):
        return requests.get(f"{self.admin}/requests", params={"since": 10**9}, timeout=10).json()["mark"]

    def writes_since(self, mark):
        log = requests.get(f"{self.admin}/requests", params={"since": mark, "writes_only": "true"}, timeout=10).json()
        return [e for e in log["requests"] if e["service"] not in TOKEN_SERVICES]

    # -- ansible-playbook
    def command(self, vars_file=VARS, *args):
        return [str(BIN / "ansible-playbook"), str(REPO / "playbooks" / "onboard.yml"), "-e", f"@{vars_file}", *args]

    def run_env(self):
        return dict(os.environ, **self.env, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                    PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")

    def onboard(self, vars_file=VARS):
        return subprocess.run(self.command(vars_file), capture_output=True, text=True, env=self.run_env(), cwd=REPO,
                              check=False)

    def onboard_killed_after(self, writes):
        """Start an onboarding and SIGKILL its whole process group once the fake logged ``writes`` writes.

        Returns how many writes were logged when it died (None if it finished first)."""
        mark = self.mark()
        proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.run_env(),
                                cwd=REPO, start_new_session=True)
        try:
            while proc.poll() is None:
                if len(self.writes_since(mark)) >= writes:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return len(self.writes_since(mark))
                time.sleep(0.05)
            return None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # -- the state an onboarding leaves
    def session(self):
        if self.http is None:
            creds = service_account.Credentials.from_service_account_file(self.env["GOOGLE_APPLICATION_CREDENTIALS"],
                                                                          scopes=[CLOUD_PLATFORM])
            self.http = AuthorizedSession(creds)
        return self.http

    def get(self, service, path, **params):
        answer = self.session().get(self.endpoints[service] + path, params=params, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def policy(self, service, path, method="POST"):
        url = self.endpoints[service] + path
        if method == "GET":
            answer = self.session().get(url, params={"optionsRequestedPolicyVersion": 3}, timeout=30)
        else:
            answer = self.session().post(url, json={"options": {"requestedPolicyVersion": 3}}, timeout=30)
        answer.raise_for_status()
        return bindings_of(answer.json())

    def snapshot(self):
        """What an onboarding leaves, without what differs between equal runs (etags, times, tokens)."""
        snap = {"projects": {}, "service_accounts": {}, "secrets": {}}
        for project in (PROW_PROJECT, BUILD_PROJECT):
            snap["projects"][project] = self.policy("cloudresourcemanager", f"/v1/projects/{project}:getIamPolicy")
            for account in self.get("iam", f"/v1/projects/{project}/serviceAccounts").get("accounts", []):
                snap["service_accounts"][account["email"]] = self.policy(
                    "iam", f"/v1/projects/{project}/serviceAccounts/{account['email']}:getIamPolicy")
        snap["bucket"] = self.policy("storage", f"/storage/v1/b/{BUCKET}/iam", method="GET")
        for secret in self.get("secretmanager", f"/v1/projects/{PROW_PROJECT}/secrets").get("secrets", []):
            name = secret["name"]
            versions = self.get("secretmanager", f"/v1/{name}/versions").get("versions", [])
            payloads = [self.get("secretmanager", f"/v1/{v['name']}:access")["payload"]["data"]
                        for v in versions if v["state"] == "ENABLED"]
            snap["secrets"][name.rsplit("/", 1)[1]] = {
                "versions": sorted(v["state"] for v in versions),
                "distinct_payloads": len(set(payloads)) == len(payloads),
                "policy": self.policy("secretmanager", f"/v1/{name}:getIamPolicy", method="GET"),
            }
        clusters = self.get("container", f"/v1/projects/{BUILD_PROJECT}/locations/-/clusters").get("clusters", [])
        snap["gke"] = sorted((c["name"], c["status"], (c.get("workloadIdentityConfig") or {}).get("workloadPool"))
                             for c in clusters)
        snap["prow"] = self.prow_objects()
        snap["outputs"] = sorted(str(p.relative_to(self.state / "out")) for p in (self.state / "out").rglob("*") if p.is_file())
        return snap

    def prow_objects(self):
        """What Prow reads from its cluster: the ExternalSecret's keys and what they point at."""
        got = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", self.env["PROW_KUBECONFIG"], "get",
                              "externalsecrets.external-secrets.io", "-A", "-o", "json"],
                             capture_output=True, text=True, check=True)
        return sorted((item["metadata"]["namespace"], item["metadata"]["name"],
                       tuple((d["secretKey"], d["remoteRef"]["key"]) for d in item["spec"]["data"]))
                      for item in json.loads(got.stdout)["items"])


def bindings_of(policy):
    """{role (with its condition's title): sorted members}; a duplicate member or binding fails here."""
    out = {}
    for binding in policy.get("bindings", []):
        role = binding["role"] + (f" if {binding['condition'].get('title')}" if binding.get("condition") else "")
        members = binding.get("members", [])
        assert len(set(members)) == len(members), f"duplicate members in {role}: {members}"
        assert role not in out, f"two bindings of {role}"
        out[role] = sorted(members)
    return out


@pytest.fixture(scope="module", name="sandbox")
def fixture_sandbox(tmp_path_factory):
    with running_sandbox(tmp_path_factory.mktemp("chaos")) as (state, env):
        yield Sandbox(state, env)


@pytest.fixture(scope="module", name="baseline")
def fixture_baseline(sandbox):
    """An uninterrupted onboarding from the seeded world: its state and how many writes it made."""
    sandbox.reset()
    mark = sandbox.mark()
    run = sandbox.onboard()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    writes = len(sandbox.writes_since(mark))
    snap = sandbox.snapshot()
    # The snapshot sees what the run did (so an empty one cannot pass as equal).
    assert snap["gke"] and snap["secrets"] and any("serviceAccount:prowjob-default-sa@" in m
                                                   for members in snap["bucket"].values() for m in members)
    return {"snapshot": snap, "writes": writes}


def clean_failure(run):
    """A failed run must say what failed, in a task's message, and not end in a Python traceback."""
    assert "Traceback (most recent call last)" not in run.stdout + run.stderr, run.stdout[-3000:] + run.stderr[-3000:]
    assert "fatal: [" in run.stdout or "failed: [" in run.stdout, run.stdout[-3000:]
    assert '"msg":' in run.stdout or "msg:" in run.stdout, run.stdout[-3000:]


def converges(sandbox, baseline, first_ok):
    """The runs after the faulted one: a re-run succeeds, the state is the baseline's, then nothing to do."""
    if not first_ok:
        rerun = sandbox.onboard()
        assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-2000:]
    assert sandbox.snapshot() == baseline["snapshot"]
    since, mark = datetime.now(timezone.utc), sandbox.mark()
    last = sandbox.onboard()
    assert last.returncode == 0, last.stdout[-4000:]
    assert recap(last)["changed"] == 0, last.stdout[-4000:]
    assert sandbox.writes_since(mark) == [] and gcp_writes(sandbox.state, since) == []
    assert kube_writes(sandbox.state, since) == []


# ---------------------------------------------------------------- the scenarios


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_faults_then_converges(sandbox, baseline, scenario):
    sandbox.reset()
    rules = sandbox.inject(SCENARIOS[scenario])
    try:
        first = sandbox.onboard()
        if not sandbox.fired(rules):
            (sandbox.state.parent / "unfired.json").write_text(json.dumps(
                {"faults": requests.get(f"{sandbox.admin}/faults", timeout=10).json(), "stdout": first.stdout}))
        assert sandbox.fired(rules), "the fault never fired: the scenario tests nothing"
    finally:
        sandbox.clear_faults()
    if first.returncode != 0:
        clean_failure(first)
    converges(sandbox, baseline, first.returncode == 0)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_sigkill_after_the_kth_write_then_converges(sandbox, baseline, fraction):
    sandbox.reset()
    k = max(1, int(baseline["writes"] * fraction))
    died_after = sandbox.onboard_killed_after(k)
    assert died_after is not None, f"the run finished before its {k}th write (of {baseline['writes']})"
    converges(sandbox, baseline, first_ok=False)


def test_two_runs_at_once_on_one_bucket_keep_both_bindings(sandbox, tmp_path):
    sandbox.reset()
    doc = yaml.safe_load(VARS.read_text())
    second = dict(doc["build_clusters"][0], alias="build-two", job_service_account="prowjob-two",
                  gke=dict(doc["build_clusters"][0]["gke"], name="prow-build-2"))
    files = []
    for index, cluster in enumerate((doc["build_clusters"][0], second)):
        # Each vars file is a whole Prow instance's view: its own output dir and build clusters' Secret (two
        # instances writing one ExternalSecret, each with only its own cluster, would undo each other), the
        # same bucket.
        one = dict(doc, build_clusters=[cluster], prow=dict(doc["prow"], output_dir=str(sandbox.state / f"out-{index}"),
                                                             build_clusters_secret=f"prow-build-clusters-{index}"))
        path = tmp_path / f"vars-{index}.yml"
        path.write_text(yaml.safe_dump(one))
        files.append(path)
    # Slow policy calls on the bucket: both runs read the same etag before either writes.
    sandbox.inject([dict(kind="latency", delay=0.5, path=POLICY_PATHS["bucket"], times=None)])
    try:
        procs = [subprocess.Popen(sandbox.command(path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=sandbox.run_env(), cwd=REPO) for path in files]
        outputs = [proc.communicate()[0] for proc in procs]
    finally:
        sandbox.clear_faults()
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-4000:]
    writers = sandbox.snapshot()["bucket"]
    members = [m for role_members in writers.values() for m in role_members]
    for account in ("prowjob-default-sa", "prowjob-two"):
        assert f"serviceAccount:{account}@{BUILD_PROJECT}.iam.gserviceaccount.com" in members, writers
    # And each instance's next run finds its cluster in sync with the other's writes: nothing to change.
    mark = sandbox.mark()
    for path in files:
        again = sandbox.onboard(path)
        assert again.returncode == 0 and recap(again)["changed"] == 0, (changed_tasks(again), again.stdout[-4000:])
    assert not sandbox.writes_since(mark)
