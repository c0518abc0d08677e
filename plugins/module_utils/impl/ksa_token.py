# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.ksa_token; plugins/modules/ksa_token.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

import base64
import copy
import os
from datetime import datetime, timezone

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc
from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig_source as sources
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError, fail_on_api_error
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import dns_label_error, dns_subdomain_error
from ansible_collections.prow.build_cluster.plugins.module_utils._values import fingerprint, format_duration, parse_duration
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE
from ansible_collections.prow.build_cluster.plugins.module_utils.k8s import (
    K8S_AUTH_ARGSPEC,
    K8S_AUTH_MUTUALLY_EXCLUSIVE,
    connect,
)

# Every token is bound to a Secret of its own (boundObjectRef): deleting the Secret revokes it.
BOUND_LABELS = {"app.kubernetes.io/managed-by": "prow.build_cluster.ksa_token"}
BOUND_SELECTOR = ",".join(f"{k}={v}" for k, v in BOUND_LABELS.items())
SA_ANNOTATION = "prow.build-cluster/service-account"

# The longest token each platform's apiserver grants (its --service-account-max-token-expiration):
# a longer duration is refused before any write, rather than silently cut by the server.
# GKE: 48h. EKS: 24h. AKS: 24h, as reported for the AKS OIDC issuer in
# https://github.com/MicrosoftDocs/azure-docs/issues/102161 (not in Microsoft's own documentation).
# other: no cap (the cluster's own flag decides; a cut is warned about).
PLATFORM_MAX_SECONDS = {"gke": 48 * 3600, "eks": 24 * 3600, "aks": 24 * 3600}
PLATFORM_LABELS = {"gke": "GKE", "eks": "EKS", "aks": "AKS"}
PLATFORMS = ["auto", "gke", "eks", "aks", "other"]
GKE_MAX_SECONDS = PLATFORM_MAX_SECONDS["gke"]
MIN_SECONDS = 600  # TokenRequest rejects expirationSeconds below 10 minutes
# Servers may shorten a lifetime a little (clock rounding); warn only about real cuts.
SHORTENED_SLACK = 60


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARGSPEC)
    spec.update(copy.deepcopy(GCP_AUTH_ARGSPEC))
    spec.update(
        state={"type": "str", "default": "present", "choices": ["present", "revoke_others", "absent"]},
        service_account={"type": "str", "default": "serviceaccount-cluster-admin"},
        namespace={"type": "str", "default": "default"},
        alias={"type": "str"},
        duration={"type": "str", "default": "48h"},
        rotate_before={"type": "str", "default": "24h"},
        force={"type": "bool", "default": False},
        platform={"type": "str", "default": "auto", "choices": list(PLATFORMS)},
        current={"type": "dict", "options": copy.deepcopy(sources.SOURCE_OPTIONS)},
        dest={"type": "path"},
        return_content={"type": "bool", "default": False},
        revoke_after={"type": "str", "default": "0"},
    )
    return spec


def alias_error(alias):
    # Prow uses the alias as a context name and as a file or Secret key name (--kubeconfig-dir).
    if not alias or len(alias) > 253 or not all(c.isalnum() or c in "-._" for c in alias) or alias.startswith("."):
        return f"alias {alias!r} is not usable: use letters, digits, '-', '_' and '.', not starting with '.' (for example build-myteam)"
    return None


def lifetimes_error(duration, rotate_before, platform, names=("duration", "rotate_before", "platform")):
    """(why the token lifetimes are refused or None, (duration, rotate_before) in seconds): the
    module's check, which the playbooks' pre-flight runs too (``names``: the options as the caller
    calls them). ``platform``: gke, eks, aks, other (auto as other: its GKE check needs the server)."""
    seconds = []
    for name, value in zip(names, (duration, rotate_before)):
        try:
            seconds.append(parse_duration(value))
        except ValueError as exc:
            return f"{name}: {exc}", None
    if seconds[0] < MIN_SECONDS:
        return f"{names[0]} {duration} is shorter than 10m, the TokenRequest API's minimum", None
    if seconds[1] >= seconds[0]:
        return (f"{names[1]} ({rotate_before}) must be shorter than {names[0]} ({duration}), "
                "otherwise every new token would be rotated at once"), None
    if seconds[0] > PLATFORM_MAX_SECONDS.get(platform, float("inf")):
        return cap_message(duration, platform, names), None
    return None, tuple(seconds)


def validate(module):
    """Every check that needs no API call; returns (duration, rotate_before) in seconds."""
    params = module.params
    state = params.get("state") or "present"
    if state != "absent" and not params["alias"]:
        module.fail_json(msg=f"alias is required with state {state}")
    for error in (
        dns_subdomain_error(params["service_account"], "service_account"),
        dns_label_error(params["namespace"], "namespace"),
        alias_error(params["alias"]) if state != "absent" or params["alias"] else None,
    ):
        if error:
            module.fail_json(msg=error)
    error = revoke_after_error(params.get("revoke_after"))
    if error:
        module.fail_json(msg=error)
    if state != "present":
        if state == "revoke_others" and params["current"] is None and not params["dest"]:
            module.fail_json(msg="state revoke_others needs the published kubeconfig: set current (or dest)")
        if params["current"] is not None:
            error = sources.validate(params["current"], "current")
            if error:
                module.fail_json(msg=error)
        return None, None
    platform = "gke" if params["platform"] == "auto" and params.get("gke") else params["platform"]
    error, seconds = lifetimes_error(params["duration"], params["rotate_before"], platform)
    if error:
        module.fail_json(msg=error)
    duration, rotate_before = seconds
    if not params["dest"] and not params["return_content"]:
        module.fail_json(msg="set dest, or return_content: true, otherwise a minted token would be lost")
    if params["return_content"] and not module.no_log:
        module.fail_json(msg=sources.RETURN_CONTENT_NEEDS_NO_LOG)
    if params["dest"] and not os.path.isdir(os.path.dirname(os.path.abspath(params["dest"]))):
        module.fail_json(msg=f"dest: directory of {params['dest']} does not exist")
    if params["current"] is not None:
        error = sources.validate(params["current"], "current")
        if error:
            module.fail_json(msg=error)
    return duration, rotate_before


def revoke_seconds(value):
    """``revoke_after`` in seconds: a duration, or 0 (``0``, ``0s``) to revoke at once."""
    text = str(value if value is not None else "0").strip().lower()
    if text in ("0", "0s", "0m", "0h"):
        return 0
    return parse_duration(text)


def revoke_after_error(value):
    try:
        revoke_seconds(value)
    except ValueError as exc:
        return f"revoke_after: {exc}"
    return None


def cap_message(duration, platform, names=("duration", "rotate_before", "platform")):
    """Why ``duration`` is refused on ``platform`` (one of PLATFORM_MAX_SECONDS)."""
    cap, label = format_duration(PLATFORM_MAX_SECONDS[platform]), PLATFORM_LABELS[platform]
    return (
        f"{names[0]} {duration} exceeds {cap}, the longest token {label} grants ({names[2]} {platform}); use {cap} "
        f"or less and rotate on a schedule (or set {names[2]}: other if this is not a {label} cluster)"
    )


def gke_cap_message(duration):
    return cap_message(duration, "gke")


def read_current(module):
    """(the current kubeconfig parsed or None, its label for messages, why it cannot be used or None).

    A secret whose version is DISABLED or DESTROYED (Google's 400 FAILED_PRECONDITION, also for
    ``latest``, the newest created version) holds no usable token: nobody who reads ``latest``
    gets it, and whoever disabled it may have meant to retire that token. So a new token is
    minted (the reason says why), and storing it as a new version repairs ``latest``.
    """
    item = module.params["current"]
    if item is None:
        if not module.params["dest"]:
            return None, None, None
        item = {"path": module.params["dest"]}
    label = sources.label_of(item, "current")
    try:
        content = sources.SourceReader(module).read(item, label)
        if content is None:
            return None, label, None
        config = kc.parse(content, label)
    except ApiError as exc:
        if sources.unreadable_version(exc):
            return None, label, f"the stored kubeconfig's version {exc.version.rsplit('/', 1)[-1]} is {exc.state} (unreadable)"
        raise
    except kc.KubeconfigError as exc:
        if module.params["force"]:
            return None, label, None  # it is being replaced anyway
        module.fail_json(msg=f"{exc}; fix or remove it, or set force: true to mint a new token regardless")
    sources.hide_credentials(module, config)
    return config, label, None


def cluster_ca(module, client, namespace):
    """The CA data the kubeconfig needs: the connection's, else the cluster's kube-root-ca.crt (as gencred read it)."""
    if client.ca_data:
        return client.ca_data
    config_map = client.get(f"/api/v1/namespaces/{namespace}/configmaps/kube-root-ca.crt", resource="configmap kube-root-ca.crt")
    pem = ((config_map or {}).get("data") or {}).get("ca.crt")
    if not pem:
        module.fail_json(msg="cannot tell the cluster's CA: the connection has none (set ca_cert) and ConfigMap kube-root-ca.crt has no ca.crt")
    return base64.b64encode(pem.encode("utf-8")).decode("ascii")


def secrets_path(namespace):
    return f"/api/v1/namespaces/{namespace}/secrets"


def bound_secret_of(token):
    """(name, uid) of the Secret a ServiceAccount token is bound to (its ``kubernetes.io.secret`` claim), or None."""
    secret = ((kc.token_claims(token) or {}).get("kubernetes.io") or {}).get("secret") or {}
    if not isinstance(secret, dict) or not secret.get("name"):
        return None
    return secret["name"], secret.get("uid")


def bound_secrets(client, namespace, service_account):
    """The Secrets this module created for the tokens of ``service_account``, oldest first."""
    listed = client.request("GET", secrets_path(namespace), query={"labelSelector": BOUND_SELECTOR},
                            resource=f"secrets in {namespace}", allow_404=True) or {}
    items = [item for item in listed.get("items") or []
             if ((item.get("metadata") or {}).get("annotations") or {}).get(SA_ANNOTATION) == service_account]
    return sorted(items, key=lambda item: (item["metadata"].get("creationTimestamp") or "", item["metadata"]["name"]))


def create_bound_secret(client, namespace, service_account, owner_uid):
    """A Secret of no content for one token to be bound to: deleting it revokes that token. Owned by
    the ServiceAccount (``owner_uid``), so the garbage collector removes it with the ServiceAccount
    however that goes (offboarding revokes first, but a ServiceAccount deleted by hand leaves none)."""
    body = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"generateName": f"{service_account[:40]}-token-", "namespace": namespace,
                     "labels": dict(BOUND_LABELS), "annotations": {SA_ANNOTATION: service_account},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "ServiceAccount", "name": service_account,
                                          "uid": owner_uid}]},
    }
    return client.request("POST", secrets_path(namespace), body, resource=f"secret {namespace}/{service_account}-token-*")


def delete_secret(client, namespace, secret):
    meta = secret["metadata"]
    client.request("DELETE", f"{secrets_path(namespace)}/{meta['name']}",
                   {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": meta["uid"]}},
                   resource=f"secret {namespace}/{meta['name']}", allow_404=True)


def mint(module, client, duration):
    """(token, expiry, bound Secret's name) from a TokenRequest bound to a new Secret, with the expiry the server granted."""
    params = module.params
    namespace, name = params["namespace"], params["service_account"]
    account = client.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}",
                             resource=f"serviceaccount {namespace}/{name}", allow_404=True)
    if not account:
        module.fail_json(msg=f"ServiceAccount {namespace}/{name} does not exist: create it first "
                             "(prow.build_cluster.gke_admin_ksa)", status=404)
    try:
        secret = create_bound_secret(client, namespace, name, account["metadata"]["uid"])
    except ApiError as exc:
        if exc.status == 404:
            module.fail_json(msg=f"namespace {namespace} does not exist: create the ServiceAccount first "
                                 f"(prow.build_cluster.gke_admin_ksa); {exc}", status=404)
        raise
    meta = secret["metadata"]
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
        "expirationSeconds": duration,
        "boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]},
    }}
    try:
        response = client.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body,
            resource=f"serviceaccounts/token {namespace}/{name}",
        )
    except ApiError as exc:
        # The Secret would bind nothing: remove it (a later revoke_others would, too).
        delete_secret(client, namespace, secret)
        if exc.status == 404:
            module.fail_json(
                msg=f"ServiceAccount {namespace}/{name} does not exist: create it first (prow.build_cluster.gke_admin_ksa); {exc}",
                status=404,
            )
        raise
    status = response.get("status") or {}
    if not status.get("token") or not status.get("expirationTimestamp"):
        module.fail_json(msg=f"TokenRequest for {namespace}/{name} returned no token or no expirationTimestamp")
    module.no_log_values.add(status["token"])
    return status["token"], kc.parse_timestamp(status["expirationTimestamp"]), meta["name"]


def describe(config, alias):
    """What a diff may show of the kubeconfig: no token, only fingerprints and expiry."""
    found = kc.credential(config, alias) if config else None
    if not found:
        return {}
    server, ca_data, token = found
    expiry = kc.token_expiry(token) if token else None
    return {
        "context": alias,
        "server": server,
        "ca": fingerprint(kc.normal_ca(ca_data) or b""),
        "token": fingerprint(token),
        "token_expiry": expiry.isoformat() if expiry else None,
        "bound_secret": (bound_secret_of(token) or (None,))[0] if token else None,
    }


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": argument_spec(),
        "mutually_exclusive": K8S_AUTH_MUTUALLY_EXCLUSIVE + GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    if not kc.HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    duration, rotate_before = validate(module)
    if module.params["state"] != "present":
        try:
            revoke(module)
        except ApiError as exc:
            fail_on_api_error(module, exc)
    params = module.params
    alias, dest = params["alias"], params["dest"]
    expected_user = f"system:serviceaccount:{params['namespace']}:{params['service_account']}"

    current, _label, unreadable = read_current(module)
    client = connect(module)
    if duration > GKE_MAX_SECONDS and params["platform"] == "auto" and client.is_gke():
        module.fail_json(msg=gke_cap_message(params["duration"]))
    server, ca_data = client.server, cluster_ca(module, client, params["namespace"])

    now = datetime.now(timezone.utc)
    reason = "force: true" if params["force"] else unreadable or kc.stale_reason(current, alias, server, ca_data, now, rotate_before)
    if reason is None:
        # Cheap checks passed; only the server knows about revocation and foreign issuers.
        reason = kc.review_reason(client.token_review(kc.credential(current, alias)[2]), expected_user)
    if reason is None and bound_secret_of(kc.credential(current, alias)[2]) is None:
        reason = "the token is not bound to a Secret, so it could not be revoked"

    token = expiry = bound = None
    if reason is None:
        token = kc.credential(current, alias)[2]
        expiry = kc.token_expiry(token)
        bound = bound_secret_of(token)[0]
    elif not module.check_mode:
        token, expiry, bound = mint(module, client, duration)
        # Nothing is published (file, return value, then Secret Manager) before the server
        # has accepted the new token as the expected identity: Prow keeps the old one until then.
        refused = kc.review_reason(client.token_review(token), expected_user)
        if refused:
            module.fail_json(msg=f"the new token failed its TokenReview ({refused}); nothing was published")
        granted = (expiry - now).total_seconds()
        if granted < duration - SHORTENED_SLACK:
            module.warn(f"the API server granted {format_duration(granted)}, less than the {params['duration']} requested")
        if granted <= rotate_before:
            module.warn(f"the token's lifetime ({format_duration(granted)}) is within rotate_before, so every run will rotate it")

    effective = kc.build(alias, server, ca_data, token) if token else None
    content = kc.dump(effective) if effective else None
    changed = reason is not None
    if dest:
        existing, mode = kc.read_file(dest)
        dest_changed = content is None or existing != content or mode != 0o600
        if dest_changed and content is not None and not module.check_mode:
            kc.write_atomic(dest, content)
        changed = changed or dest_changed

    if effective:
        after = describe(effective, alias)
    else:  # check mode, a token would be minted: show what is known of the new kubeconfig
        after = {"context": alias, "server": server, "ca": fingerprint(kc.normal_ca(ca_data) or b""),
                 "token": "(minted on apply)", "token_expiry": "(granted by the server)",
                 "bound_secret": f"(created on apply: {params['service_account'][:40]}-token-*)"}
    result = {
        "changed": changed,
        "rotated": reason is not None,
        "reason": reason,
        "expiration_timestamp": expiry.isoformat() if expiry else None,
        "expires_in_seconds": int((expiry - now).total_seconds()) if expiry else None,
        "fingerprint": fingerprint(token),
        "service_account": expected_user,
        "server": server,
        "alias": alias,
        "bound_secret": bound,
        "diff": {"before": describe(current, alias), "after": after},
    }
    if dest:
        result["dest"] = dest
    if params["return_content"] and content is not None:
        result["kubeconfig"] = sources.return_in_clear(module, content)
    module.exit_json(**result)


def age_seconds(secret, now):
    created = (secret.get("metadata") or {}).get("creationTimestamp")
    return (now - kc.parse_timestamp(created)).total_seconds() if created else 0


def revoke(module):
    """state revoke_others (every token of the ServiceAccount but the published one) or absent (every one).

    A token is revoked by deleting the Secret it is bound to. With revoke_others a Secret goes once
    both it and the published token's Secret are ``revoke_after`` old: an older token was superseded
    that long ago (Prow had the time to load the new one), a newer one was minted that long ago and
    never published (a run that failed before storing it). The published token must authenticate as
    the ServiceAccount and be bound to a Secret, otherwise nothing is revoked: its Secret is the
    one that stays.
    """
    params = module.params
    namespace, name, state = params["namespace"], params["service_account"], params["state"]
    expected_user = f"system:serviceaccount:{namespace}:{name}"
    keep, why_not = None, None
    if state == "revoke_others":
        current, label, unreadable = read_current(module)
    client = connect(module, would="revoke the tokens of its ServiceAccount")
    if state == "revoke_others":
        token = (kc.credential(current, params["alias"]) or (None, None, None))[2] if current else None
        why_not = unreadable or (None if token else f"{label or 'the current kubeconfig'} holds no token of context {params['alias']!r}")
        if why_not is None:
            why_not = kc.review_reason(client.token_review(token), expected_user)
        if why_not is None:
            keep = bound_secret_of(token)
            if keep is None:
                why_not = "the published token is not bound to a Secret"
        if why_not:
            message = f"nothing revoked: the published token cannot be kept ({why_not}); rotate first"
            if module.check_mode:  # the real run's ksa_token before this call mints and stores one
                module.exit_json(changed=False, revoked=[], pending=[], kept=None, msg=message)
            module.fail_json(msg=message)

    now = datetime.now(timezone.utc)
    secrets = bound_secrets(client, namespace, name)
    revoke_after = revoke_seconds(params["revoke_after"])
    kept_secret = next((s for s in secrets if keep and s["metadata"]["name"] == keep[0]), None)
    kept_age = age_seconds(kept_secret, now) if kept_secret else float("inf")
    revoked, pending = [], []
    for secret in secrets:
        meta = secret["metadata"]
        if keep and meta["name"] == keep[0]:
            continue
        if state == "absent" or min(age_seconds(secret, now), kept_age) >= revoke_after:
            revoked.append(meta["name"])
            if not module.check_mode:
                delete_secret(client, namespace, secret)
        else:
            pending.append(meta["name"])
    module.exit_json(
        changed=bool(revoked), revoked=revoked, pending=pending, kept=keep[0] if keep else None,
        service_account=expected_user,
        diff={"before": {"bound_secrets": [s["metadata"]["name"] for s in secrets]},
              "after": {"bound_secrets": [s["metadata"]["name"] for s in secrets if s["metadata"]["name"] not in revoked]}},
    )
