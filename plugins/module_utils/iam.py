# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""IAM policies as data: validating members and roles, adding or removing one member.

Pure functions, no I/O, so the merge rules are unit-tested on their own. The rules:

* a binding is identified by its role *and* its condition (Google allows several bindings
  of one role that differ by condition); only the one binding named is touched, every other
  binding, member, ``auditConfigs`` entry and the ``etag`` are passed back as read;
* policies are read as version 3 (below 3 Google hides conditions: IAM shows conditional
  bindings as ``ROLE_withcond_HASH``, Cloud Storage refuses the read) and written as
  version 3 when the policy read or the policy written has a condition (Google refuses any
  change to a conditional policy made as version 1, including removing its last
  condition); otherwise as version 1;
* emails compare case-insensitively, as IAM stores them lowercased.
"""

from __future__ import annotations

import copy
import re

from ansible_collections.prow.build_cluster.plugins.module_utils._validate import principal_member_error

WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"

# serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA]: the identity of a Kubernetes service
# account in a GKE Workload Identity pool.
WI_MEMBER = re.compile(
    r"^serviceAccount:(?P<pool>(?:[a-z0-9.-]+:)?[a-z][-a-z0-9]{4,28}[a-z0-9]\.svc\.id\.goog)"
    r"\[(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/(?P<name>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)\]$"
)
_EMAIL = re.compile(r"^[^@\s:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_EMAIL_KINDS = ("user", "serviceAccount", "group")
_PROJECT_CONVENIENCE = ("projectOwner", "projectEditor", "projectViewer")  # Cloud Storage only
_ROLE = re.compile(
    r"^(roles/[A-Za-z0-9_.]+|(projects|organizations)/[A-Za-z0-9_.:-]+/roles/[A-Za-z0-9_.]+)$"
)
MEMBER_FORMS = (
    "user:EMAIL, serviceAccount:EMAIL, group:EMAIL, domain:DOMAIN, "
    "serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA], principal://..., principalSet://..., "
    "allUsers, allAuthenticatedUsers, or (buckets) projectOwner:/projectEditor:/projectViewer:PROJECT"
)


def workload_identity_member(pool, namespace, name):
    return f"serviceAccount:{pool}[{namespace}/{name}]"


def direct_member(project_number, pool, namespace, name):
    """The principal:// member of a KSA in a GKE pool: what a policy names to grant the pod's own
    federated token access (direct resource access, no GSA), by the pool project's NUMBER."""
    return (f"principal://iam.googleapis.com/projects/{project_number}/locations/global/"
            f"workloadIdentityPools/{pool}/subject/ns/{namespace}/sa/{name}")


def federated_member(project_number, pool, namespace, name):
    """The principal:// member of a KSA of a cluster outside GKE, through a Workload Identity Federation
    pool whose provider maps google.subject=assertion.sub: the token's subject,
    system:serviceaccount:NAMESPACE:NAME."""
    return (f"principal://iam.googleapis.com/projects/{project_number}/locations/global/"
            f"workloadIdentityPools/{pool}/subject/system:serviceaccount:{namespace}:{name}")


def federated_audience(project_number, pool, provider):
    """The STS audience of a pool's provider (what the KSA token's audience and the credential configuration name)."""
    return (f"//iam.googleapis.com/projects/{project_number}/locations/global/"
            f"workloadIdentityPools/{pool}/providers/{provider}")


def normalize_member(member):
    """The form IAM stores: the email part lowercased (IAM compares emails without case)."""
    kind, sep, value = member.partition(":")
    if sep and kind in _EMAIL_KINDS + ("domain",) and "[" not in value:
        return f"{kind}:{value.lower()}"
    return member


def member_error(member):
    """Why ``member`` is not an IAM principal IAM would accept, or None."""
    if not isinstance(member, str) or not member or member != member.strip():
        return f"member {member!r} is empty or has surrounding spaces; use one of {MEMBER_FORMS}"
    if member in ("allUsers", "allAuthenticatedUsers"):
        return None
    kind, sep, value = member.partition(":")
    if not sep or not value:
        return f"member {member!r} has no TYPE: prefix; use one of {MEMBER_FORMS}"
    if kind == "serviceAccount" and "[" in value:
        if not WI_MEMBER.match(member):
            return (f"member {member!r} is not a Workload Identity principal of the form "
                    "serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA]")
        return None
    if kind in _EMAIL_KINDS:
        return None if _EMAIL.match(value) else f"member {member!r}: {value!r} is not an email address"
    if kind == "domain":
        return None if re.match(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$", value) else f"member {member!r}: {value!r} is not a domain"
    if kind in ("principal", "principalSet"):
        return principal_member_error(member)
    if kind in _PROJECT_CONVENIENCE:
        return None
    return f"member {member!r}: unknown type {kind!r}; use one of {MEMBER_FORMS}"


def role_error(role):
    if not isinstance(role, str) or not _ROLE.match(role):
        return (f"role {role!r} is not a role name: use roles/NAME (predefined), "
                "projects/PROJECT/roles/NAME or organizations/ID/roles/NAME (custom)")
    return None


def condition_error(condition):
    if condition is None:
        return None
    if not isinstance(condition, dict) or not condition.get("title") or not condition.get("expression"):
        return "condition needs a title and an expression (CEL), for example {title: expires, expression: 'request.time < timestamp(\"2030-01-01T00:00:00Z\")'}"
    return None


def _condition_key(condition):
    if not condition:
        return None
    return (condition.get("title") or "", condition.get("expression") or "", condition.get("description") or "")


def _same_binding(binding, role, condition):
    return binding.get("role") == role and _condition_key(binding.get("condition")) == _condition_key(condition)


def members_of(policy, role, condition=None):
    """Sorted members of the one binding (role, condition); [] if there is none."""
    for binding in (policy or {}).get("bindings") or []:
        if _same_binding(binding, role, condition):
            return sorted(binding.get("members") or [])
    return []


def has_member(policy, role, member, condition=None):
    wanted = normalize_member(member)
    return any(normalize_member(m) == wanted for m in members_of(policy, role, condition))


def has_conditions(policy):
    return any(b.get("condition") for b in (policy or {}).get("bindings") or [])


def _finish(policy, read):
    """Set the version the policy must be written with: 3 when it, or the policy it was
    made from, has a conditional binding."""
    policy["version"] = 3 if has_conditions(policy) or has_conditions(read) else 1
    return policy


def add_member(policy, role, member, condition=None):
    """(new policy, changed): ``policy`` with ``member`` in the (role, condition) binding."""
    if has_member(policy, role, member, condition):
        return policy, False
    new = copy.deepcopy(policy or {})
    bindings = new.setdefault("bindings", [])
    for binding in bindings:
        if _same_binding(binding, role, condition):
            binding["members"] = sorted(set(binding.get("members") or []) | {normalize_member(member)})
            break
    else:
        binding = {"role": role, "members": [normalize_member(member)]}
        if condition:
            binding["condition"] = {k: v for k, v in condition.items() if v}
        bindings.append(binding)
    return _finish(new, policy), True


def remove_member(policy, role, member, condition=None):
    """(new policy, changed): ``policy`` without ``member`` in that binding; an emptied binding goes."""
    if not has_member(policy, role, member, condition):
        return policy, False
    new = copy.deepcopy(policy)
    wanted = normalize_member(member)
    kept = []
    for binding in new.get("bindings") or []:
        if _same_binding(binding, role, condition):
            binding["members"] = [m for m in binding.get("members") or [] if normalize_member(m) != wanted]
            if not binding["members"]:
                continue
        kept.append(binding)
    new["bindings"] = kept
    return _finish(new, policy), True


def is_policy_conflict(exc):
    """Someone else wrote the policy between our read and our write: re-read and try again.

    IAM, Resource Manager and Secret Manager answer a stale etag with 409 ABORTED;
    Cloud Storage with 412 Precondition Failed.
    """
    status = getattr(exc, "status", None)
    return status == 412 or (status == 409 and getattr(exc, "reason", None) in (None, "ABORTED", "conflict"))
