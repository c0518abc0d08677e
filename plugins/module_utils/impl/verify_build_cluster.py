# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.verify_build_cluster; plugins/modules/verify_build_cluster.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import datetime, timezone

from ansible_collections.prow.build_cluster.plugins.module_utils import _gcp_session, _validate, iam, k8s
from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc
from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig_source as source
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError
from ansible_collections.prow.build_cluster.plugins.module_utils._prow_components import COMPONENT_RULES, component_access
from ansible_collections.prow.build_cluster.plugins.module_utils._values import format_duration, parse_duration

PROW_POD_VERBS = ("create", "delete", "list", "watch", "get", "patch")
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
FIX_ONBOARD = "run playbooks/onboard.yml (or rotate.yml) for this cluster"
FIX_EXEC = "run playbooks/onboard.yml: gke_exec_kubeconfig rewrites the keyless kubeconfig from the GKE API"
FIX_ROTATE = "run playbooks/rotate.yml -e force_rotation=true (a new token, a new version), and check that the rotation job runs"
ANNOTATION = "iam.gke.io/gcp-service-account"
FIX_FEDERATED = "run playbooks/onboard.yml (the gcs_access role, job_identity federated)"
# The audience of a federated credential configuration: its provider, by the pool project's number.
PROVIDER_AUDIENCE = re.compile(r"^//iam\.googleapis\.com/projects/(?P<number>[0-9]+)/locations/global/"
                               r"workloadIdentityPools/(?P<pool>[^/]+)/providers/(?P<provider>[^/]+)$")


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


def check_credential(module, admin, checks, stored=None, component=None):
    """Prow's side: stored kubeconfig -> TokenReview -> SSARs -> expiry. Returns the token expiry.

    With ``component`` (per-component access of the token model), the chain of that component's own
    kubeconfig (``stored``): its links say the component, and its permissions are exactly the
    component's (SelfSubjectAccessReviews with its token), without reading Secrets."""
    params = module.params
    stored = stored or params["stored"]
    of = f" of {component}" if component else ""
    label = source.label_of(stored, "stored kubeconfig" + of)
    reader = source.SourceReader(module)
    try:
        text = reader.read(stored, label)
    except ApiError as exc:
        # A DISABLED or DESTROYED version, also as versions/latest (the newest created one,
        # which is what External Secrets and every other reader gets): the error names it.
        fix = "check that the secret exists and that you may read it"
        if source.unreadable_version(exc):
            fix = f"enable version {exc.version} if it was disabled by mistake, or {FIX_ROTATE}"
        checks.broken("stored kubeconfig" + of, str(exc), fix)
    except kc.KubeconfigError as exc:
        checks.broken("stored kubeconfig" + of, str(exc), "check that the file exists and that you may read it")
    if text is None:
        checks.broken("stored kubeconfig" + of, f"{label} does not exist", FIX_ONBOARD)
    try:
        config = kc.parse(text, label)
    except kc.KubeconfigError as exc:
        checks.broken("stored kubeconfig" + of, str(exc), FIX_ONBOARD)
    source.hide_credentials(module, config)
    contexts = {c["name"] for c in config["contexts"]}
    if params["alias"] not in contexts:
        checks.broken("stored kubeconfig" + of, f"no context {params['alias']!r} (has: {', '.join(sorted(contexts))})",
                      "onboard with this alias, or verify the alias the kubeconfig was made for")
    cluster, user = kc.context_details(config, params["alias"])
    if user.get("exec") and not component:
        return check_exec_credential(module, admin, checks, label, cluster, user["exec"])
    token = user.get("token")
    if not token:
        checks.broken("stored kubeconfig" + of, f"context {params['alias']!r} has no bearer token", FIX_ONBOARD)
    if cluster.get("server") != admin.server:
        checks.broken("stored kubeconfig" + of, f"it points at {cluster.get('server')}, this cluster is {admin.server}",
                      "the kubeconfig belongs to another cluster: " + FIX_ONBOARD)
    checks.ok("stored kubeconfig" + of, f"{label}: context {params['alias']} for {admin.server}")

    review = admin.token_review(token)
    if not review.get("authenticated"):
        checks.broken("token" + of, *token_rejected(admin, token, review))
    username = (review.get("user") or {}).get("username")
    checks.ok("token" + of, f"authenticates as {username}")

    prow = k8s.connect_kubeconfig(module, config, params["alias"])
    if component:
        check_component(checks, component, username, params["pod_namespace"],
                        lambda verb, namespace, resource, sub: prow.can_i(verb, resource, namespace=namespace, subresource=sub)[0],
                        fix="run playbooks/onboard.yml: with access per-component it binds each component's ServiceAccount "
                            "to its Role", link="permissions" + of)
    else:
        denied = [verb for verb in PROW_POD_VERBS if not prow.can_i(verb, "pods", namespace=params["pod_namespace"])[0]]
        if denied:
            checks.broken("permissions", f"{username} cannot {', '.join(denied)} pods in {params['pod_namespace']}",
                          "run playbooks/onboard.yml, whose gke_admin_ksa binds the ServiceAccount to cluster-admin "
                          "(or bind it to a role with these verbs)")
        checks.ok("permissions", f"may {', '.join(PROW_POD_VERBS)} pods in {params['pod_namespace']}")

    expiry = kc.token_expiry(token)
    remaining = (expiry - datetime.now(timezone.utc)).total_seconds() if expiry else None
    if remaining is not None and remaining < parse_duration(params["min_validity"]):
        checks.broken("expiry" + of, f"the token expires in {format_duration(max(remaining, 0))}, at {expiry.isoformat()}",
                      "run playbooks/rotate.yml, and check that the rotation job runs")
    checks.ok("expiry" + of, f"valid until {expiry.isoformat()}" if expiry else "the token carries no expiry")
    return expiry


def check_exec_credential(module, admin, checks, label, cluster, plugin):
    """The keyless model's chain: stored kubeconfig (this cluster's server and CA) -> exec credential
    (the plugin, with Application Default Credentials) -> permissions of each identity the plugin
    may run as (SubjectAccessReviews: RBAC, then GKE's IAM). No token, so no expiry. Returns None."""
    params = module.params
    if cluster.get("server") != admin.server:
        checks.broken("stored kubeconfig", f"it points at {cluster.get('server')}, this cluster is {admin.server}",
                      "the endpoint changed or was edited: " + FIX_EXEC)
    if admin.ca_data and kc.normal_ca(cluster.get("certificate-authority-data")) != kc.normal_ca(admin.ca_data):
        checks.broken("stored kubeconfig", f"its CA is not this cluster's ({admin.server})", "the CA changed or was edited: " + FIX_EXEC)
    checks.ok("stored kubeconfig", f"{label}: context {params['alias']} for {admin.server}, no secret in it")

    command = " ".join([plugin.get("command") or "", *(plugin.get("args") or [])]).strip()
    if plugin.get("command") != kc.GKE_EXEC_PLUGIN["command"] or "--use_application_default_credentials" not in (plugin.get("args") or []):
        checks.broken("exec credential", f"the user runs {command!r}",
                      "Prow's images have no gcloud: " + FIX_EXEC + " (gke-gcloud-auth-plugin --use_application_default_credentials)")
    identities = params["exec_identities"]
    components = params["exec_component_identities"]
    if not identities and not components:
        checks.broken("exec credential", f"runs {command}, but no identity to check it for",
                      "set exec_identities (prow.control_plane_service_accounts): who Prow's pods run as")
    checks.ok("exec credential", f"runs {command} as {', '.join(identities or sorted(set(components.values())))}")

    for identity in identities:
        denied = [verb for verb in PROW_POD_VERBS if not subject_can(admin, identity, verb, params["pod_namespace"])]
        if denied:
            checks.broken("permissions", f"{identity} cannot {', '.join(denied)} pods in {params['pod_namespace']}",
                          "run playbooks/onboard.yml: it grants the IAM role on the project and, with gke_exec_access "
                          "rbac, binds the service accounts (kind User)")
    if identities:
        checks.ok("permissions", f"{', '.join(identities)} may {', '.join(PROW_POD_VERBS)} pods in {params['pod_namespace']}")
    for component, identity in sorted(components.items()):
        check_component(checks, component, identity, params["pod_namespace"],
                        lambda verb, namespace, resource, sub, who=identity: subject_can(admin, who, verb, namespace, resource, sub),
                        fix="run playbooks/onboard.yml: with access per-component it binds each component's Role (kind User)")
    checks.ok("expiry", "no stored token: the plugin gets a fresh one for each use")
    return None


def check_component(checks, component, identity, namespace, can, fix, link=None):
    """Per-component access: ``identity`` may do exactly what ``component`` checks, and no more than that
    (it may not read Secrets in the pod namespace, which none of Prow's components needs). ``can(verb,
    namespace or None, resource, subresource)`` asks the cluster for the identity: a SubjectAccessReview
    for a Google identity, a SelfSubjectAccessReview with a component's own token."""
    link = link or f"permissions of {component}"
    if component not in COMPONENT_RULES:
        checks.broken(link, f"unknown component (known: {', '.join(sorted(COMPONENT_RULES))})",
                      "correct prow.component_service_accounts")
    denied = [f"{verb} {resource}{'/' + sub if sub else ''}{'' if namespaced else ' (cluster)'}"
              for resource, sub, verb, namespaced in component_access(component)
              if not can(verb, namespace if namespaced else None, resource, sub)]
    if denied:
        checks.broken(link, f"{identity} cannot {', '.join(denied)} in {namespace}", fix)
    if can("get", namespace, "secrets", ""):
        checks.broken(link, f"{identity} may read Secrets in {namespace}: more than {component} needs",
                      "remove the broader binding (a cluster-admin one left from access cluster-admin, or an IAM role "
                      "such as container.developer): run playbooks/onboard.yml")
    allowed = ", ".join(f"{verb} {resource}{'/' + sub if sub else ''}" for resource, sub, verb, _ns in component_access(component))
    checks.ok(link, f"{identity} may {allowed}, and not read Secrets, in {namespace}")


def subject_can(admin, user, verb, namespace, resource="pods", subresource=""):
    """A SubjectAccessReview for ``user`` (a Google identity's email, as GKE names it): what RBAC
    and, on GKE, IAM let it do (``namespace`` None: a cluster-scoped resource)."""
    attributes = {"verb": verb, "resource": resource, "group": ""}
    if subresource:
        attributes["subresource"] = subresource
    if namespace:
        attributes["namespace"] = namespace
    review = admin.request(
        "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
         "spec": {"user": user, "groups": ["system:authenticated"], "resourceAttributes": attributes}},
        resource="subjectaccessreviews")
    return bool((review.get("status") or {}).get("allowed"))


def token_rejected(admin, token, review):
    """(detail, fix) for a stored token the cluster rejects: expired, its ServiceAccount deleted, or else."""
    detail = f"the cluster rejects the token: {review.get('error') or 'not authenticated'}"
    expiry = kc.token_expiry(token)
    if expiry and expiry <= datetime.now(timezone.utc):
        return f"{detail} (it expired at {expiry.isoformat()})", FIX_ROTATE
    subject = str((kc.token_claims(token) or {}).get("sub", "")).split(":")
    if len(subject) == 4 and subject[:2] == ["system", "serviceaccount"]:
        namespace, account = subject[2:]
        if admin.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}",
                     resource=f"serviceaccount {namespace}/{account}") is None:
            return (f"{detail} (its ServiceAccount {namespace}/{account} no longer exists)",
                    "run playbooks/onboard.yml: gke_admin_ksa creates the ServiceAccount again and ksa_token mints its token")
    return detail, "the token was revoked or belongs to another cluster: " + FIX_ROTATE


def check_workload_identity(module, admin, session, checks):
    """The jobs' side: KSA -> its token -> STS -> (GSA token) -> object write (only if nothing else failed).

    Returns the GSA the jobs act as, or with ``job_identity: direct`` the KSA's principal:// member.
    """
    params = module.params
    wi = params["workload_identity"]
    namespace = wi.get("namespace") or params["pod_namespace"]
    ksa = wi["service_account"]
    direct = wi["job_identity"] == "direct"
    if wi["job_identity"] == "federated":
        return check_federated_identity(module, admin, session, checks, namespace, ksa)
    if not admin.gke_cluster:
        checks.broken("workload identity", "the cluster was not reached through gke:, so its identity pool is unknown",
                      "connect with gke: projects/P/locations/L/clusters/C")
    project, location, name = _validate.parse_gke_name(params["gke"])
    pool = (admin.gke_cluster.get("workloadIdentityConfig") or {}).get("workloadPool")
    if not pool:
        checks.broken("workload identity", "Workload Identity is off on the cluster", "run the cluster role (gke_cluster)")

    account = admin.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{ksa}", resource=f"serviceaccount {namespace}/{ksa}")
    gsa = ((account or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION)
    if direct:
        check_direct_ksa(account, gsa, f"{namespace}/{ksa}", checks)
    else:
        check_annotated_ksa(gsa, wi.get("gcp_service_account"), f"{namespace}/{ksa}", checks)

    minted = admin.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{ksa}/token",
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "spec": {"audiences": [pool], "expirationSeconds": 600}},
                           resource=f"serviceaccount {namespace}/{ksa} token")
    audience = f"identitynamespace:{pool}:https://container.googleapis.com/v1/projects/{project}/locations/{location}/clusters/{name}"
    # Every call from here on is made as the KSA, then as the GSA, never with the operator's
    # credentials (as_bearer): each link proves what the jobs' identity may do.
    try:
        federated = sts_exchange(session, minted["status"]["token"], audience)
    except ApiError as exc:
        checks.broken("STS exchange", str(exc), f"check that Workload Identity ({pool}) is enabled on the cluster")

    if direct:
        # The member the bucket must name, by the pool project's number (an operator read).
        pool_project = pool[: -len(".svc.id.goog")]
        info = session.request("GET", "cloudresourcemanager", f"/v1/projects/{pool_project}", f"project {pool_project}")
        identity = iam.direct_member(info.get("projectNumber", ""), pool, namespace, ksa)
        checks.ok("STS exchange", f"KSA token exchanged for a federated token of {identity}")
        token = federated
    else:
        checks.ok("STS exchange", f"KSA token exchanged for a federated token of {pool}[{namespace}/{ksa}]")
        try:
            token = session.request("POST", "iamcredentials", f"/v1/projects/-/serviceAccounts/{gsa}:generateAccessToken",
                                    f"service account {gsa}", as_bearer=federated,
                                    json_body={"scope": [CLOUD_PLATFORM]})["accessToken"]
        except ApiError as exc:
            checks.broken("impersonation", str(exc),
                          f"grant roles/iam.workloadIdentityUser to serviceAccount:{pool}[{namespace}/{ksa}] on {gsa} "
                          f"(workload_identity_binding); if {gsa} is not the job GSA, correct the KSA's {ANNOTATION} annotation")
        checks.ok("impersonation", f"the KSA obtains an access token of {gsa}")
        identity = f"serviceAccount:{gsa}"

    check_bucket_write(module, session, identity, token, checks)
    return identity if direct else gsa


def check_federated_identity(module, admin, session, checks, namespace, ksa):
    """A cluster outside GKE: KSA -> the credential configuration the jobs mount -> a pod's token -> STS
    (the configuration's provider) -> object write, as the KSA's principal:// member. Returns that member."""
    wi = module.params["workload_identity"]
    account = admin.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{ksa}", resource=f"serviceaccount {namespace}/{ksa}")
    gsa = ((account or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION)
    check_direct_ksa(account, gsa, f"{namespace}/{ksa}", checks)

    name, key = wi["credential_secret"], wi["credential_secret_key"]
    where = f"Secret {namespace}/{name} key {key}"
    secret = admin.get(f"/api/v1/namespaces/{namespace}/secrets/{name}", resource=f"Secret {namespace}/{name}")
    try:
        config = json.loads(base64.b64decode(((secret or {}).get("data") or {})[key]))
    except (KeyError, ValueError, TypeError):
        checks.broken("credential configuration", f"{where} is missing or not JSON", FIX_FEDERATED)
    provider = PROVIDER_AUDIENCE.match(str(config.get("audience", "")))
    if config.get("type") != "external_account" or provider is None or not (config.get("credential_source") or {}).get("file"):
        checks.broken("credential configuration", f"{where} is not an external_account configuration of a workload "
                      "identity pool provider reading a token file", FIX_FEDERATED)
    identity = iam.federated_member(provider.group("number"), provider.group("pool"), namespace, ksa)
    checks.ok("credential configuration", f"{where}: provider {provider.group('pool')}/{provider.group('provider')}, "
              f"token file {config['credential_source']['file']}")

    # The token every container of a job pod has: the automounted one, the apiserver's default audiences.
    minted = admin.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{ksa}/token",
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "spec": {"expirationSeconds": 600}},
                           resource=f"serviceaccount {namespace}/{ksa} token")
    try:
        token = sts_exchange(session, minted["status"]["token"], config["audience"],
                             config.get("subject_token_type") or JWT_TOKEN_TYPE)
    except ApiError as exc:
        checks.broken("STS exchange", str(exc),
                      f"{FIX_FEDERATED}: the provider {provider.group('provider')} must exist, be enabled, hold the "
                      "cluster's issuer and keys and allow the audience of its pods' tokens")
    checks.ok("STS exchange", f"a pod token of the KSA exchanged for a federated token of {identity}")
    check_bucket_write(module, session, identity, token, checks)
    return identity


def check_annotated_ksa(gsa, expected, ksa, checks):
    if not gsa:
        checks.broken("job KSA", f"{ksa} is missing or has no {ANNOTATION} annotation",
                      "run playbooks/onboard.yml (workload_identity_binding creates and annotates the KSA)")
    if expected and gsa != expected:
        checks.broken("job KSA", f"{ksa} is annotated with {gsa}, not the job GSA {expected}",
                      f"set the KSA's {ANNOTATION} annotation to {expected}: run playbooks/onboard.yml "
                      "(workload_identity_binding)")
    checks.ok("job KSA", f"{ksa} is annotated with {gsa}")


def check_direct_ksa(account, gsa, ksa, checks):
    """Direct access: the KSA exists and names no GSA (an annotation makes its pods impersonate it)."""
    fix = "run playbooks/onboard.yml (workload_identity_binding with job_identity direct)"
    if account is None:
        checks.broken("job KSA", f"{ksa} does not exist", fix + " creates it")
    if gsa:
        checks.broken("job KSA", f"{ksa} is annotated with {gsa}: its pods would act as that GSA, not with direct access",
                      f"remove the {ANNOTATION} annotation: " + fix)
    checks.ok("job KSA", f"{ksa} exists, with no GSA annotation (direct access)")


def sts_exchange(session, subject_token, audience, subject_token_type=None):
    """A Kubernetes token exchanged at STS for a federated access token, as the jobs' clients do (no
    operator credentials); ApiError when STS refuses it."""
    return session.request("POST", "sts", "/v1/token", "STS token exchange", as_bearer=_gcp_session.ANONYMOUS, json_body={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token_type": subject_token_type or JWT_TOKEN_TYPE,
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": subject_token, "audience": audience, "scope": CLOUD_PLATFORM,
    })["access_token"]


def check_bucket_write(module, session, identity, token, checks):
    """As the jobs' identity (the GSA, or the KSA's principal): write a probe object and delete it.

    A probe the identity cannot delete is deleted by the operator. Not in check mode, nor when a link
    above is broken (a failed verify writes nothing).
    """
    if module.check_mode:
        checks.skipped("bucket write", "not written in check mode")
        return
    if checks.failures:
        checks.skipped("bucket write", "not written: a failed verify writes nothing, and a link above is broken")
        return
    params = module.params
    bucket = params["workload_identity"]["bucket"]
    probe = f"{params['workload_identity']['object_prefix']}/{params['alias']}/{int(time.time())}.txt"
    url = f"gs://{bucket}/{probe}"
    fix = f"grant roles/storage.objectAdmin on gs://{bucket} to {identity} (gcp_iam_member, in the gcs_access role)"
    who = identity[len("serviceAccount:"):] if identity.startswith("serviceAccount:") else identity
    object_path = f"/storage/v1/b/{bucket}/o/{probe.replace('/', '%2F')}"
    try:
        session.request("POST", "storage", f"/upload/storage/v1/b/{bucket}/o", url, as_bearer=token,
                        params={"uploadType": "media", "name": probe}, headers={"Content-Type": "text/plain"},
                        data=b"written by prow.build_cluster.verify_build_cluster\n")
    except ApiError as exc:
        checks.broken("bucket write", f"{who} cannot write: {exc}", fix)
    try:
        session.request("DELETE", "storage", object_path, url, as_bearer=token)
    except ApiError as exc:
        try:
            session.request("DELETE", "storage", object_path, url, allow_404=True)
            left = "the operator deleted the probe"
        except ApiError as cleanup:
            left = f"the probe is left behind, the operator could not delete it either: {cleanup}"
        checks.broken("bucket write", f"{who} wrote {url} but cannot delete it ({left}): {exc}",
                      fix + "; jobs overwrite objects, which needs storage.objects.delete")
    checks.ok("bucket write", f"{who} wrote and deleted {url}")


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": {
            **k8s.K8S_AUTH_ARGSPEC,
            **_gcp_session.GCP_AUTH_ARGSPEC,
            "alias": {"type": "str", "required": True},
            "stored": {"type": "dict", "options": source.SOURCE_OPTIONS},
            "pod_namespace": {"type": "str", "default": "test-pods"},
            "min_validity": {"type": "str", "default": "6h"},
            "exec_identities": {"type": "list", "elements": "str", "default": []},
            "exec_component_identities": {"type": "dict", "default": {}},
            "component_secrets": {"type": "dict", "default": {}, "no_log": False},  # names of secrets
            "workload_identity": {
                "type": "dict",
                "options": {
                    "service_account": {"type": "str", "default": "prowjob-default-sa"},
                    "namespace": {"type": "str"},
                    "gcp_service_account": {"type": "str"},
                    "job_identity": {"type": "str", "choices": ["gsa", "direct", "federated"], "default": "gsa"},
                    "credential_secret": {"type": "str", "default": "gcs-credentials", "no_log": False},  # a name
                    "credential_secret_key": {"type": "str", "default": "service-account.json", "no_log": False},
                    "bucket": {"type": "str", "required": True},
                    "object_prefix": {"type": "str", "default": "prow-build-cluster-verify"},
                },
            },
        },
        "mutually_exclusive": k8s.K8S_AUTH_MUTUALLY_EXCLUSIVE + _gcp_session.GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    params = module.params
    problem = None
    if params["stored"]:
        problem = source.validate(params["stored"], "stored")
    elif not params["component_secrets"]:
        problem = "give stored (Prow's kubeconfig) or component_secrets (each component's, per-component access)"
    for component, secret in sorted(params["component_secrets"].items()):
        if component not in COMPONENT_RULES:
            problem = problem or f"component_secrets: unknown component {component!r} (known: {', '.join(sorted(COMPONENT_RULES))})"
        problem = problem or source.validate({"secret": secret}, f"component_secrets.{component}")
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
        if params["stored"]:
            try:
                expiry = check_credential(module, admin, checks)
                result["token_expiry"] = expiry.isoformat() if expiry else None
            except Broken:
                pass
        for component, secret in sorted(params["component_secrets"].items()):
            try:
                check_credential(module, admin, checks, {"secret": secret}, component)
            except Broken:
                pass
        if params["workload_identity"]:
            try:
                identity = check_workload_identity(module, admin, _gcp_session.GcpSession(module), checks)
                direct = params["workload_identity"]["job_identity"] in ("direct", "federated")
                result["job_principal" if direct else "gcp_service_account"] = identity
            except Broken:
                pass
    except ApiError as err:
        module.fail_json(msg=f"verification could not run: {err}", **result)
    if checks.failures:
        lines = [f"{c['link']}: {c['detail']} (fix: {c['fix']})" for c in checks.failures]
        module.fail_json(msg="build cluster {}: {} broken: {}".format(
            params["alias"], "1 link" if len(lines) == 1 else f"{len(lines)} links", "; ".join(lines)), **result)
    module.exit_json(**result)
