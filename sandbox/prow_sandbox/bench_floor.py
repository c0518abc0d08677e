"""The floor of ``prow-sandbox bench``: the reads of a no-op run, in one bare Python process.

``python -m prow_sandbox.bench_floor --mode onboard|rotate CONFIG.json`` makes, with the
official clients (google-auth's AuthorizedSession for the Google REST APIs, the kubernetes
client for the apiservers), the reads a run that changes nothing cannot avoid, once each
and one after the other as the playbooks do, and prints a JSON summary. The bench times it
from outside, so interpreter start and imports count as they do for ansible-playbook.

``onboard`` (what a no-op ``onboard.yml`` must read), with one access token for the process:

* once: the results bucket and its IAM policy; the Prow namespace and the ClusterSecretStore;
* per build cluster: the GKE cluster (endpoint, CA, Workload Identity); the job GSA and its
  IAM policy (the Workload Identity binding); the secret's latest version (the stored
  kubeconfig, whose token expiry decides rotation) and the secret's IAM policy (accessors);
  in the build cluster, with the Google token: the job namespace, the job KSA, Prow's KSA and
  its ClusterRoleBinding, and a TokenReview of the stored token; in the Prow cluster, the
  ExternalSecret.

``rotate`` (a not-due ``rotate.yml``): per build cluster the GKE cluster, the secret's
latest version and a TokenReview of its token.

Nothing is compared beyond what decides a write (the token's expiry, the review's user);
the point is the cost of the calls, not of the logic.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time

T_START = time.monotonic()

# pylint: disable=wrong-import-position  # the import time is part of what is measured
import yaml
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import service_account
from kubernetes import client as k8s, config as k8s_config

T_IMPORTED = time.monotonic()

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


class Counter:
    def __init__(self):
        self.gcp = 0
        self.k8s = 0


def gcp_get(session, counter, url, method="GET", **kwargs):
    counter.gcp += 1
    response = session.request(method, url, timeout=30, **kwargs)
    response.raise_for_status()
    return response.json()


def token_expiry(token: str) -> int:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]


def stored_token(session, counter, ep, secret) -> str:
    version = gcp_get(session, counter, f"{ep['secretmanager']}/v1/{secret}/versions/latest:access")
    kubeconfig = yaml.safe_load(base64.b64decode(version["payload"]["data"]))
    return kubeconfig["users"][0]["user"]["token"]


def build_client(session, counter, ep, cluster, creds, tmpdir):
    """(kubernetes ApiClient with the Google token, GKE cluster resource)."""
    gke = gcp_get(session, counter, f"{ep['container']}/v1/projects/{cluster['project']}"
                  f"/locations/{cluster['location']}/clusters/{cluster['name']}")
    ca = os.path.join(tmpdir, f"{cluster['alias']}.crt")
    with open(ca, "wb") as handle:
        handle.write(base64.b64decode(gke["masterAuth"]["clusterCaCertificate"]))
    conf = k8s.Configuration()
    conf.host = f"https://{gke['endpoint']}"
    conf.ssl_ca_cert = ca
    conf.api_key = {"authorization": creds.token}
    conf.api_key_prefix = {"authorization": "Bearer"}
    return k8s.ApiClient(conf), gke


def review(api, counter, token):
    counter.k8s += 1
    body = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token))
    status = k8s.AuthenticationV1Api(api).create_token_review(body).status
    if not status.authenticated:
        raise SystemExit(f"floor: stored token not accepted: {status.error}")
    return status.user.username


def onboard(cfg, session, creds, counter, tmpdir):
    ep = cfg["endpoints"]
    bucket = cfg["bucket"]
    gcp_get(session, counter, f"{ep['storage']}/storage/v1/b/{bucket}")
    gcp_get(session, counter, f"{ep['storage']}/storage/v1/b/{bucket}/iam",
            params={"optionsRequestedPolicyVersion": 3})

    prow = k8s_config.new_client_from_config(config_file=cfg["prow_kubeconfig"])
    prow_core = k8s.CoreV1Api(prow)
    prow_custom = k8s.CustomObjectsApi(prow)
    counter.k8s += 2
    prow_core.read_namespace(cfg["prow_namespace"])
    prow_custom.get_cluster_custom_object("external-secrets.io", "v1", "clustersecretstores",
                                          cfg["cluster_secret_store"])

    for cluster in cfg["clusters"]:
        api, _gke = build_client(session, counter, ep, cluster, creds, tmpdir)
        gsa = f"{cluster['job_service_account']}@{cluster['project']}.iam.gserviceaccount.com"
        gcp_get(session, counter, f"{ep['iam']}/v1/projects/{cluster['project']}/serviceAccounts/{gsa}")
        gcp_get(session, counter, f"{ep['iam']}/v1/projects/-/serviceAccounts/{gsa}:getIamPolicy",
                method="POST", json={"options": {"requestedPolicyVersion": 3}})
        token = stored_token(session, counter, ep, cluster["secret"])
        if token_expiry(token) - time.time() < cluster["rotate_before_seconds"]:
            raise SystemExit(f"floor: the stored token of {cluster['alias']} is due: run onboard first")
        gcp_get(session, counter, f"{ep['secretmanager']}/v1/{cluster['secret']}:getIamPolicy",
                params={"options.requestedPolicyVersion": 3})

        core = k8s.CoreV1Api(api)
        counter.k8s += 4
        core.read_namespace(cluster["pod_namespace"])
        core.read_namespaced_service_account(cluster["job_service_account"], cluster["pod_namespace"])
        core.read_namespaced_service_account(cfg["admin_ksa"], cfg["admin_ksa_namespace"])
        k8s.RbacAuthorizationV1Api(api).read_cluster_role_binding(cfg["admin_binding"])
        review(api, counter, token)

    # One ExternalSecret for every build cluster (docs/prow-integration.md).
    counter.k8s += 1
    prow_custom.get_namespaced_custom_object("external-secrets.io", "v1", cfg["prow_namespace"],
                                             "externalsecrets", "prow-build-clusters")


def rotate(cfg, session, creds, counter, tmpdir):
    ep = cfg["endpoints"]
    for cluster in cfg["clusters"]:
        api, _gke = build_client(session, counter, ep, cluster, creds, tmpdir)
        token = stored_token(session, counter, ep, cluster["secret"])
        if token_expiry(token) - time.time() < cluster["rotate_before_seconds"]:
            raise SystemExit(f"floor: the stored token of {cluster['alias']} is due")
        review(api, counter, token)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prow_sandbox.bench_floor")
    parser.add_argument("--mode", choices=["onboard", "rotate"], default="onboard")
    parser.add_argument("config", help="JSON written by prow-sandbox bench")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as handle:
        cfg = json.load(handle)
    creds = service_account.Credentials.from_service_account_file(cfg["credentials_file"], scopes=SCOPES)
    creds.refresh(Request())  # the one token of the process (the GKE apiservers need it too)
    session = AuthorizedSession(creds)
    counter = Counter()
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmpdir:
        (onboard if args.mode == "onboard" else rotate)(cfg, session, creds, counter, tmpdir)
    done = time.monotonic()
    print(json.dumps({"mode": args.mode, "clusters": len(cfg["clusters"]), "gcp_reads": counter.gcp,
                      "k8s_reads": counter.k8s, "token_fetches": 1,
                      "import_seconds": round(T_IMPORTED - T_START, 3),
                      "calls_seconds": round(done - T_IMPORTED, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
