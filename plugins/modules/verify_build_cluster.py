#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: verify_build_cluster
short_description: Prove that Prow can use a build cluster and that its jobs can write results
version_added: 0.1.0
description:
  - Checks, link by link, what Prow relies on, and fails naming the first broken link of each chain and how to mend it.
  - "Prow's credential: the stored kubeconfig (a file, inline content or a Secret Manager secret) has a context
    O(alias) for this cluster's server; the build cluster's TokenReview accepts its token; that token passes
    SelfSubjectAccessReviews for C(create), C(delete), C(list), C(watch), C(get) and C(patch) on C(pods) in
    O(pod_namespace), as prow-controller-manager checks at start-up; and it is valid for at least O(min_validity)."
  - "Job uploads (with O(workload_identity)): the job KSA exists and names a GSA in C(iam.gke.io/gcp-service-account);
    a token of the KSA (TokenRequest with audience C(POOL)) is exchanged at STS for a federated token and at
    IAM Credentials for the GSA's access token, exactly as GKE's metadata server does for a pod; and with that
    token an object is written to the results bucket and deleted again. No pod is started, so this takes seconds."
  - Reads only, except the probe object, which is deleted at once; it reports C(changed=false). In check mode the
    probe object is not written.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  alias:
    description: Context name of the build cluster in the stored kubeconfig.
    type: str
    required: true
  stored:
    description: Where Prow's kubeconfig is stored. Exactly one of O(stored.path), O(stored.content), O(stored.secret).
    type: dict
    required: true
    suboptions:
      name:
        description: A label for messages.
        type: str
      path:
        description: Path of a kubeconfig file.
        type: path
      content:
        description: Kubeconfig content. Never logged.
        type: raw
      secret:
        description: Secret Manager secret, C(projects/PROJECT/secrets/SECRET[/versions/VERSION]).
        type: str
  pod_namespace:
    description: Namespace Prow creates job pods in.
    type: str
    default: test-pods
  min_validity:
    description: The stored token must stay valid at least this long (Go-style duration).
    type: str
    default: 6h
  workload_identity:
    description: Also prove the jobs' Workload Identity chain and bucket access. Needs a O(gke) connection.
    type: dict
    suboptions:
      service_account:
        description: The job KSA.
        type: str
        default: prowjob-default-sa
      namespace:
        description: Namespace of the job KSA; O(pod_namespace) by default.
        type: str
      bucket:
        description: Results bucket the jobs write to.
        type: str
        required: true
      object_prefix:
        description: Prefix of the probe object.
        type: str
        default: prow-build-cluster-verify
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.attributes.K8S
  - prow.build_cluster.k8s_auth
  - prow.build_cluster.gcp_auth
notes:
  - The connection options (O(gke), O(kubeconfig), ...) are the operator's admin access to the build cluster, used
    for the TokenReview and to mint the job KSA's short-lived token; the stored kubeconfig is used only for what
    Prow itself does with it.
"""

EXAMPLES = r"""
- name: Prove the build cluster works for Prow
  prow.build_cluster.verify_build_cluster:
    gke: projects/team-a-build/locations/us-central1-b/clusters/prow-build
    alias: build-team-a
    stored:
      secret: projects/my-prow-project/secrets/prow_build_cluster_kubeconfig_build-team-a
    workload_identity:
      bucket: my-prow-results
  register: verified
"""

RETURN = r"""
checks:
  description: Every link checked, in order.
  returned: always
  type: list
  elements: dict
  contains:
    link:
      description: What was checked.
      type: str
    ok:
      description: Whether it holds; null when it was not checked because an earlier link is broken.
      type: bool
    detail:
      description: What was found.
      type: str
    fix:
      description: How to mend it, for a broken link.
      type: str
token_expiry:
  description: Expiry of the stored token (ISO 8601).
  returned: when the stored kubeconfig has a token
  type: str
gcp_service_account:
  description: The GSA jobs act as.
  returned: with workload_identity
  type: str
"""

import time
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils import gcp, k8s
from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc
from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig_source as source
from ansible_collections.prow.build_cluster.plugins.module_utils.common import ApiError, format_duration, parse_duration

PROW_POD_VERBS = ("create", "delete", "list", "watch", "get", "patch")
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
FIX_ONBOARD = "run playbooks/onboard.yml (or rotate.yml) for this cluster"


class Broken(Exception):
    """A link of a chain does not hold: the links after it cannot be checked."""


class Checks:
    def __init__(self):
        self.items = []

    def ok(self, link, detail):
        self.items.append({"link": link, "ok": True, "detail": detail, "fix": None})

    def broken(self, link, detail, fix):
        self.items.append({"link": link, "ok": False, "detail": detail, "fix": fix})
        raise Broken(link)

    def skipped(self, link, detail):
        self.items.append({"link": link, "ok": None, "detail": detail, "fix": None})

    @property
    def failures(self):
        return [c for c in self.items if c["ok"] is False]


def check_credential(module, admin, checks):
    """Prow's side: stored kubeconfig -> TokenReview -> SSARs -> expiry. Returns the token expiry."""
    params = module.params
    label = source.label_of(params["stored"], "stored kubeconfig")
    try:
        text = source.SourceReader(module).read(params["stored"], label)
    except (ApiError, kc.KubeconfigError) as exc:
        checks.broken("stored kubeconfig", str(exc), "check that the secret or file exists and that you may read it")
    if text is None:
        checks.broken("stored kubeconfig", f"{label} does not exist", FIX_ONBOARD)
    try:
        config = kc.parse(text, label)
    except kc.KubeconfigError as exc:
        checks.broken("stored kubeconfig", str(exc), FIX_ONBOARD)
    source.hide_credentials(module, config)
    contexts = {c["name"] for c in config["contexts"]}
    if params["alias"] not in contexts:
        checks.broken("stored kubeconfig", f"no context {params['alias']!r} (has: {', '.join(sorted(contexts))})",
                      "onboard with this alias, or verify the alias the kubeconfig was made for")
    cluster, user = kc.context_details(config, params["alias"])
    token = user.get("token")
    if not token:
        checks.broken("stored kubeconfig", f"context {params['alias']!r} has no bearer token", FIX_ONBOARD)
    if cluster.get("server") != admin.server:
        checks.broken("stored kubeconfig", f"it points at {cluster.get('server')}, this cluster is {admin.server}",
                      "the kubeconfig belongs to another cluster: " + FIX_ONBOARD)
    checks.ok("stored kubeconfig", f"{label}: context {params['alias']} for {admin.server}")

    review = admin.token_review(token)
    if not review.get("authenticated"):
        checks.broken("token", f"the cluster rejects the token: {review.get('error') or 'not authenticated'}",
                      "the token expired, was revoked or belongs to another cluster: run playbooks/rotate.yml")
    checks.ok("token", f"authenticates as {(review.get('user') or {}).get('username')}")

    prow = k8s.connect_kubeconfig(module, config, params["alias"])
    denied = [verb for verb in PROW_POD_VERBS
              if not prow.can_i(verb, "pods", namespace=params["pod_namespace"])[0]]
    if denied:
        checks.broken("permissions", f"cannot {', '.join(denied)} pods in {params['pod_namespace']}",
                      "bind the ServiceAccount to cluster-admin, or to a role with these verbs (gke_admin_ksa)")
    checks.ok("permissions", f"may {', '.join(PROW_POD_VERBS)} pods in {params['pod_namespace']}")

    expiry = kc.token_expiry(token)
    remaining = (expiry - datetime.now(timezone.utc)).total_seconds() if expiry else None
    if remaining is not None and remaining < parse_duration(params["min_validity"]):
        checks.broken("expiry", f"the token expires in {format_duration(max(remaining, 0))}, at {expiry.isoformat()}",
                      "run playbooks/rotate.yml, and check that the rotation job runs")
    checks.ok("expiry", f"valid until {expiry.isoformat()}" if expiry else "the token carries no expiry")
    return expiry


def check_workload_identity(module, admin, session, checks):
    """The jobs' side: KSA -> its token -> STS -> GSA token -> object write. Returns the GSA."""
    params = module.params
    wi = params["workload_identity"]
    namespace = wi.get("namespace") or params["pod_namespace"]
    ksa = wi["service_account"]
    if not admin.gke_cluster:
        checks.broken("workload identity", "the cluster was not reached through gke:, so its identity pool is unknown",
                      "connect with gke: projects/P/locations/L/clusters/C")
    project, location, name = k8s.parse_gke_name(params["gke"])
    pool = (admin.gke_cluster.get("workloadIdentityConfig") or {}).get("workloadPool")
    if not pool:
        checks.broken("workload identity", "Workload Identity is off on the cluster", "run the cluster role (gke_cluster)")

    account = admin.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{ksa}", resource=f"serviceaccount {namespace}/{ksa}")
    gsa = ((account or {}).get("metadata", {}).get("annotations") or {}).get("iam.gke.io/gcp-service-account")
    if not gsa:
        checks.broken("job KSA", f"{namespace}/{ksa} is missing or has no iam.gke.io/gcp-service-account annotation",
                      "run the gcs_access role (workload_identity_binding)")
    checks.ok("job KSA", f"{namespace}/{ksa} is annotated with {gsa}")

    minted = admin.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{ksa}/token",
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "spec": {"audiences": [pool], "expirationSeconds": 600}},
                           resource=f"serviceaccount {namespace}/{ksa} token")
    audience = f"identitynamespace:{pool}:https://container.googleapis.com/v1/projects/{project}/locations/{location}/clusters/{name}"
    try:
        federated = post_json(session, "sts", "/v1/token", None, {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "subject_token": minted["status"]["token"], "audience": audience, "scope": CLOUD_PLATFORM,
        })["access_token"]
    except ApiError as exc:
        checks.broken("STS exchange", str(exc), f"check that Workload Identity ({pool}) is enabled on the cluster")
    checks.ok("STS exchange", f"KSA token exchanged for a federated token of {pool}[{namespace}/{ksa}]")

    try:
        gsa_token = post_json(session, "iamcredentials", f"/v1/projects/-/serviceAccounts/{gsa}:generateAccessToken",
                              federated, {"scope": [CLOUD_PLATFORM]})["accessToken"]
    except ApiError as exc:
        checks.broken("impersonation", str(exc),
                      f"grant roles/iam.workloadIdentityUser to serviceAccount:{pool}[{namespace}/{ksa}] on {gsa} "
                      "(workload_identity_binding)")
    checks.ok("impersonation", f"the KSA obtains an access token of {gsa}")

    if module.check_mode:
        checks.skipped("bucket write", "not written in check mode")
        return gsa
    bucket = wi["bucket"]
    probe = f"{wi['object_prefix']}/{params['alias']}/{int(time.time())}.txt"
    try:
        session.session.request(
            "POST", f"{session.url('storage', '')}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": probe}, data=b"written by prow.build_cluster.verify_build_cluster\n",
            headers={"Authorization": f"Bearer {gsa_token}", "Content-Type": "text/plain"}, timeout=gcp.HTTP_TIMEOUT,
        ).raise_for_status()
        session.session.request(
            "DELETE", f"{session.url('storage', '')}/storage/v1/b/{bucket}/o/{probe.replace('/', '%2F')}",
            headers={"Authorization": f"Bearer {gsa_token}"}, timeout=gcp.HTTP_TIMEOUT,
        ).raise_for_status()
    except Exception as exc:  # pylint: disable=broad-exception-caught
        response = getattr(exc, "response", None)
        detail = gcp.error_from_response(response, f"gs://{bucket}/{probe}") if response is not None else exc
        checks.broken("bucket write", str(detail),
                      f"grant roles/storage.objectAdmin on gs://{bucket} to serviceAccount:{gsa} (gcp_iam_member)")
    checks.ok("bucket write", f"{gsa} wrote and deleted gs://{bucket}/{probe}")
    return gsa


def post_json(session, service, path, bearer, body):
    """POST to an endpoint that authenticates by the token given (STS: none), not the caller's credentials."""
    import requests  # pylint: disable=import-outside-toplevel

    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    url = session.url(service, path)
    response = requests.post(url, json=body, headers=headers, timeout=gcp.HTTP_TIMEOUT)
    if response.status_code >= 400:
        raise gcp.error_from_response(response, path)
    return response.json()


def main():
    module = AnsibleModule(
        argument_spec={
            **k8s.K8S_AUTH_ARGSPEC,
            **gcp.GCP_AUTH_ARGSPEC,
            "alias": {"type": "str", "required": True},
            "stored": {"type": "dict", "required": True, "options": source.SOURCE_OPTIONS},
            "pod_namespace": {"type": "str", "default": "test-pods"},
            "min_validity": {"type": "str", "default": "6h"},
            "workload_identity": {
                "type": "dict",
                "options": {
                    "service_account": {"type": "str", "default": "prowjob-default-sa"},
                    "namespace": {"type": "str"},
                    "bucket": {"type": "str", "required": True},
                    "object_prefix": {"type": "str", "default": "prow-build-cluster-verify"},
                },
            },
        },
        mutually_exclusive=k8s.K8S_AUTH_MUTUALLY_EXCLUSIVE + gcp.GCP_AUTH_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    params = module.params
    problem = source.validate(params["stored"], "stored")
    try:
        parse_duration(params["min_validity"])
    except ValueError as exc:
        problem = problem or f"min_validity: {exc}"
    if problem:
        module.fail_json(msg=problem)

    admin = k8s.connect(module)
    checks = Checks()
    result = {"changed": False, "checks": checks.items}
    try:
        try:
            expiry = check_credential(module, admin, checks)
            result["token_expiry"] = expiry.isoformat() if expiry else None
        except Broken:
            pass
        if params["workload_identity"]:
            try:
                result["gcp_service_account"] = check_workload_identity(module, admin, gcp.GcpSession(module), checks)
            except Broken:
                pass
    except ApiError as err:
        module.fail_json(msg=f"verification could not run: {err}", **result)
    if checks.failures:
        lines = [f"{c['link']}: {c['detail']} -> {c['fix']}" for c in checks.failures]
        module.fail_json(msg="build cluster {}: {} broken: {}".format(params["alias"], len(lines), "; ".join(lines)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
