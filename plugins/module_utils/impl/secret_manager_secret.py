# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.secret_manager_secret; plugins/modules/secret_manager_secret.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

import hashlib

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError
from ansible_collections.prow.build_cluster.plugins.module_utils._values import fingerprint
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE, GcpSession
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import first_error, labels_error, secret_id_error
from ansible_collections.prow.build_cluster.plugins.module_utils.secretmanager import SecretManager

MAX_PAYLOAD = 64 * 1024


def replication_body(locations):
    if not locations:
        return {"automatic": {}}
    return {"user_managed": {"replicas": [{"location": loc} for loc in sorted(locations)]}}


def replication_of(secret):
    """Sorted user-managed regions, or [] for automatic replication."""
    replicas = ((secret.get("replication") or {}).get("userManaged") or {}).get("replicas") or []
    return sorted(r.get("location") for r in replicas)


def version_number(version):
    return int(version["name"].rsplit("/", 1)[1])


def newest_of(versions):
    """The most recently created version, whatever its state: what ``versions/latest`` is, so what
    every consumer (External Secrets, composite_kubeconfig, verify) reads."""
    return max(versions, key=version_number) if versions else None


def plan_pruning(versions, keep, action):
    """Versions (API dicts) to disable or destroy so that only the newest ``keep`` enabled stay enabled.

    The newest version (``latest``) is never touched, whatever its state: disabling or
    destroying it would leave every reader of ``latest`` without a payload. Only versions older
    than the oldest kept one are touched: an enabled or disabled version in between (say one
    someone disabled by hand) is theirs to decide about.
    """
    if not keep or not versions:
        return []
    newest = version_number(newest_of(versions))
    enabled = sorted((v for v in versions if v["state"] == "ENABLED"), key=version_number, reverse=True)
    kept = enabled[:keep]
    if not kept:
        return []
    oldest_kept = version_number(kept[-1])
    states = ("ENABLED",) if action == "disable" else ("ENABLED", "DISABLED")
    return [v for v in versions if version_number(v) < min(oldest_kept, newest) and v["state"] in states]


def describe(secret, newest, payload_fp):
    """What a diff shows: the secret's settings and its newest version (``latest``), its state and
    the payload's fingerprint (never the payload)."""
    if not secret:
        return {}
    return {
        "labels": secret.get("labels") or {},
        "replication": replication_of(secret) or "automatic",
        "version": version_number(newest) if newest else None,
        "state": newest["state"] if newest else None,
        "payload": payload_fp,
    }


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": dict(
            GCP_AUTH_ARGSPEC,
            name={"type": "str", "required": True},
            payload={"type": "str", "no_log": True},
            labels={"type": "dict"},
            replication_locations={"type": "list", "elements": "str"},
            keep_versions={"type": "int"},
            prune_action={"type": "str", "choices": ["disable", "destroy"], "default": "disable"},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        "mutually_exclusive": GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    params = module.params
    payload = params["payload"].encode("utf-8") if params["payload"] is not None else None
    error = first_error(
        secret_id_error(params["name"]),
        labels_error(params["labels"]),
        "payload: empty; Secret Manager refuses an empty version" if payload == b"" else None,
        f"payload: {len(payload or b'')} bytes, more than the 64 KiB Secret Manager accepts" if len(payload or b"") > MAX_PAYLOAD else None,
        "keep_versions: must be at least 1" if params["keep_versions"] is not None and params["keep_versions"] < 1 else None,
    )
    if error:
        module.fail_json(msg=error)
    gcp = GcpSession(module)
    sm = SecretManager(gcp)
    project = gcp.require_project()
    name = f"projects/{project}/secrets/{params['name']}"
    resource = f"secret {name}"
    result = {"changed": False, "version": None, "version_added": False, "pruned": [], "secret": {}}
    if payload is not None:
        result["payload_fingerprint"] = fingerprint(payload)
    secret = sm.get_secret(name, resource)
    result["existed"] = secret is not None
    if params["state"] == "absent":
        result["diff"] = {"before": describe(secret, None, None), "after": {}}
        if secret:
            result["changed"] = True
            if not module.check_mode:
                sm.delete_secret(name, resource)
    else:
        ensure(module, sm, project, name, resource, secret, payload, result)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


def ensure(module, sm, project, name, resource, secret, payload, result):
    params = module.params
    check = module.check_mode
    before_secret, after_secret = secret, secret
    has_versions = secret is not None  # a secret just created has none yet
    if secret is None:
        result["changed"] = True
        labels = params["labels"] or {}
        after_secret = {"name": name, "labels": labels,
                        "replication": {"userManaged": {"replicas": [{"location": loc} for loc in sorted(params["replication_locations"])]}}
                        if params["replication_locations"] else {"automatic": {}}}
        if not check:
            try:
                secret = after_secret = sm.create_secret(
                    f"projects/{project}", params["name"],
                    {"replication": replication_body(params["replication_locations"]), "labels": labels}, resource)
            except ApiError as err:
                # 409: another run created it meanwhile, or our own attempt did and its answer was
                # lost (then retried): it exists now, and its versions are read below.
                if err.status != 409:
                    raise
                secret = after_secret = sm.get_secret(name, resource) or after_secret
                has_versions = True
    else:
        wanted = params["replication_locations"]
        if wanted is not None and replication_of(secret) != sorted(wanted):
            module.fail_json(msg=(
                f"{resource}: replication is {replication_of(secret) or 'automatic'}, not {sorted(wanted) or 'automatic'}; "
                "replication cannot change. Delete and recreate the secret, or match replication_locations."))
        labels = dict(secret.get("labels") or {}, **(params["labels"] or {}))
        if labels != (secret.get("labels") or {}):
            result["changed"] = True
            after_secret = dict(secret, labels=labels)
            if not check:
                secret = after_secret = sm.update_labels(name, labels, resource)

    versions = sm.list_versions(name, resource) if has_versions else []
    # Compared against what consumers read: versions/latest, the newest CREATED version whatever
    # its state (not the newest enabled one). If it is DISABLED or DESTROYED, every reader of
    # latest fails (400 FAILED_PRECONDITION), so a new version is due even for the same payload.
    newest = newest_of(versions)
    current_fp = None
    result["latest_state"] = newest["state"] if newest else None
    if newest and newest["state"] == "ENABLED" and payload is not None:
        # Read and hash the current payload in memory; only its fingerprint ever leaves this function.
        _version, current = sm.access(newest["name"], resource)
        current_fp = fingerprint(current)
        same = hashlib.sha256(current).digest() == hashlib.sha256(payload).digest()
        result["reason"] = None if same else "payload differs"
    elif payload is None:
        same = True
        if newest and newest["state"] != "ENABLED":
            module.warn(f"{resource}: the newest version ({version_number(newest)}) is {newest['state']}, so whoever reads "
                        "versions/latest gets an error; give payload to add a new version")
    else:
        same = False
        result["reason"] = (f"the newest version ({version_number(newest)}) is {newest['state']}, readers of latest get nothing"
                            if newest else "no version yet")

    after_newest = newest
    if not same:
        result["changed"] = result["version_added"] = True
        if check:
            number = max([version_number(v) for v in versions] or [0]) + 1
            after_newest = {"name": f"{name}/versions/{number}", "state": "ENABLED", "_planned": True}
        else:
            after_newest = sm.add_version(name, payload, resource)
        versions = [after_newest] + versions

    prune = plan_pruning(versions, params["keep_versions"], params["prune_action"])
    for version in prune:
        result["changed"] = True
        result["pruned"].append(str(version_number(version)))
        if not check:
            sm.set_version_state(version["name"], params["prune_action"], version.get("etag"), resource)

    result["name"] = (after_secret or {}).get("name")
    result["secret"] = secret or {}
    if after_newest and not after_newest.get("_planned"):
        result["version"] = after_newest["name"]
    after_fp = fingerprint(payload) if payload is not None else current_fp
    result["diff"] = {
        "before": describe(before_secret, newest, current_fp),
        "after": dict(describe(after_secret, after_newest, after_fp), pruned=result["pruned"]),
    }
