"""IAM policies, roles and the permission check, shared by every service.

A policy is attached to a resource (project, service account, bucket, secret). Access is
granted if the resource's policy or an ancestor's (the project's) binds a role holding the
permission to one of the caller's member strings, which is how Google's IAM evaluates
allow policies. Roles list only the permissions the fake checks, as glob patterns.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, invalid

# Permissions per role (fnmatch patterns). Only what the fake enforces; real roles hold
# more. Basic roles apply to every resource type; the rest name their service.
ROLES: dict[str, tuple[str, ...]] = {
    "roles/owner": ("*",),
    # Editor cannot change IAM policies, as on Google.
    "roles/editor": ("*.create", "*.delete", "*.get", "*.list", "*.update", "*.add",
                     "*.access", "*.enable", "*.disable", "*.destroy", "*.getIamPolicy",
                     "container.*", "storage.objects.*"),
    "roles/viewer": ("*.get", "*.list", "*.getIamPolicy"),
    "roles/resourcemanager.projectIamAdmin": ("resourcemanager.projects.getIamPolicy",
                                              "resourcemanager.projects.setIamPolicy"),
    "roles/iam.serviceAccountAdmin": ("iam.serviceAccounts.*",),
    "roles/iam.serviceAccountKeyAdmin": ("iam.serviceAccountKeys.*",),
    "roles/iam.serviceAccountUser": ("iam.serviceAccounts.actAs", "iam.serviceAccounts.get",
                                     "iam.serviceAccounts.list"),
    "roles/iam.serviceAccountTokenCreator": ("iam.serviceAccounts.getAccessToken",
                                             "iam.serviceAccounts.getOpenIdToken",
                                             "iam.serviceAccounts.signBlob",
                                             "iam.serviceAccounts.signJwt"),
    # What a KSA needs on a GSA to act as it (the Workload Identity binding).
    "roles/iam.workloadIdentityUser": ("iam.serviceAccounts.getAccessToken",
                                       "iam.serviceAccounts.getOpenIdToken"),
    "roles/iam.workloadIdentityPoolAdmin": ("iam.workloadIdentityPools.*",
                                            "iam.workloadIdentityPoolProviders.*"),
    "roles/iam.workloadIdentityPoolViewer": ("iam.workloadIdentityPools.get",
                                             "iam.workloadIdentityPools.list",
                                             "iam.workloadIdentityPoolProviders.get",
                                             "iam.workloadIdentityPoolProviders.list"),
    "roles/storage.admin": ("storage.*",),
    "roles/storage.objectAdmin": ("storage.objects.*",),
    "roles/storage.objectCreator": ("storage.objects.create",),
    "roles/storage.objectViewer": ("storage.objects.get", "storage.objects.list"),
    "roles/storage.legacyBucketOwner": ("storage.buckets.get", "storage.buckets.update",
                                        "storage.buckets.getIamPolicy",
                                        "storage.buckets.setIamPolicy",
                                        "storage.objects.create", "storage.objects.delete",
                                        "storage.objects.list"),
    "roles/storage.legacyBucketWriter": ("storage.buckets.get", "storage.objects.create",
                                         "storage.objects.delete", "storage.objects.list"),
    "roles/storage.legacyBucketReader": ("storage.buckets.get", "storage.objects.list"),
    "roles/storage.legacyObjectOwner": ("storage.objects.get", "storage.objects.update"),
    "roles/storage.legacyObjectReader": ("storage.objects.get",),
    "roles/secretmanager.admin": ("secretmanager.*",),
    "roles/secretmanager.secretAccessor": ("secretmanager.versions.access",),
    "roles/secretmanager.viewer": ("secretmanager.secrets.get", "secretmanager.secrets.list",
                                   "secretmanager.versions.get", "secretmanager.versions.list"),
    "roles/secretmanager.secretVersionAdder": ("secretmanager.versions.add",),
    "roles/secretmanager.secretVersionManager": ("secretmanager.versions.*",),
    "roles/container.admin": ("container.*",),
    "roles/container.clusterAdmin": ("container.clusters.*", "container.operations.*"),
    "roles/container.developer": ("container.clusters.get", "container.clusters.list",
                                  "container.clusters.getCredentials",
                                  "container.operations.get", "container.operations.list"),
    "roles/container.viewer": ("container.clusters.get", "container.clusters.list",
                               "container.operations.get", "container.operations.list"),
    "roles/container.clusterViewer": ("container.clusters.get", "container.clusters.list"),
}

BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})

# Member prefixes Google accepts in bindings; anything else is "Invalid member type".
_MEMBER_KINDS = ("user:", "serviceAccount:", "group:", "domain:", "deleted:",
                 "principal://", "principalSet://", "projectOwner:", "projectEditor:",
                 "projectViewer:")
_SPECIAL_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})
# serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA], the Workload Identity member.
WI_MEMBER_RE = re.compile(r"^serviceAccount:(?P<pool>[a-z][-a-z0-9.:]*\.svc\.id\.goog)"
                          r"\[(?P<ns>[^/\]]+)/(?P<ksa>[^\]]+)\]$")
# principal:// (one identity) and principalSet:// (a set) members of a workload identity
# pool, by project NUMBER: .../subject/S, .../*, .../group/G, .../attribute.A/V, and GKE's
# .../namespace/NS and .../kubernetes.cluster/URL.
POOL_PREFIX = "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/{pool}"
POOL_MEMBER_RE = re.compile(
    r"^(?P<kind>principal|principalSet)://iam\.googleapis\.com/projects/(?P<number>\d+)"
    r"/locations/global/workloadIdentityPools/(?P<pool>[a-z0-9][-a-z0-9.]*)/(?P<rest>.+)$")
_PRINCIPAL_REST_RE = re.compile(r"^subject/.+$")
_PRINCIPAL_SET_REST_RE = re.compile(
    r"^(\*|group/.+|attribute\.[a-z0-9_]+/.+|namespace/[^/]+|kubernetes\.cluster/https://.+)$")


def pool_member_problem(member: str) -> str | None:
    """Why a ``principal://``/``principalSet://`` member is malformed, or None if it is not."""
    if not member.startswith(("principal://", "principalSet://")):
        return None
    match = POOL_MEMBER_RE.match(member)
    if match is None:
        return (f"Invalid principal identifier {member}: expected "
                "principal[Set]://iam.googleapis.com/projects/NUMBER/locations/global/"
                "workloadIdentityPools/POOL/...")
    rest_re = _PRINCIPAL_REST_RE if match.group("kind") == "principal" else _PRINCIPAL_SET_REST_RE
    if not rest_re.match(match.group("rest")):
        return f"Invalid principal identifier {member}."
    return None


def role_grants(role: str, permission: str) -> bool:
    return any(fnmatch.fnmatchcase(permission, pat) for pat in ROLES.get(role, ()))


def role_supported(role: str, service_prefix: str, *, basic_allowed: bool) -> bool:
    """Whether ``role`` can be bound on a resource whose permissions start with the prefix.

    Google refuses roles that hold no permission for the resource type (e.g. a storage
    role on a service account): "Role X is not supported for this resource."
    """
    if role in BASIC_ROLES:
        return basic_allowed
    if role not in ROLES:
        return False
    return any(p == "*" or p.startswith(service_prefix) for p in ROLES[role])


# Etags: IAM's are base64 of an opaque 8-byte version; "ACAB" is the value Google returns
# for a policy that was never written. A process-wide counter keeps every etag distinct.
_etag_counter = itertools.count(1)
EMPTY_POLICY_ETAG = "ACAB"


def new_etag() -> str:
    return base64.b64encode(b"\x07" + next(_etag_counter).to_bytes(7, "big")).decode()


@dataclass
class Policy:
    """An allow policy. ``bindings`` are normalised: one entry per (role, condition),
    members sorted and unique, no empty bindings (Google returns them that way)."""

    bindings: list[dict[str, Any]] = field(default_factory=list)
    etag: str = EMPTY_POLICY_ETAG
    version: int = 1

    def to_json(self, extra: dict[str, Any] | None = None, *,
                requested_version: int = 3) -> dict[str, Any]:
        """The policy as getIamPolicy returns it for ``options.requestedPolicyVersion``.

        Version 3 (or a policy without conditions) is the policy as stored. Below 3, IAM
        formats a conditional policy as version 1: each conditional binding's role becomes
        ``ROLE_withcond_HASH`` and its condition is left out
        (https://cloud.google.com/iam/docs/troubleshooting-withcond). Cloud Storage refuses
        such a read instead (see :func:`storage.get_bucket_policy`).
        """
        version = self.version
        bindings = [dict(b, members=list(b["members"])) for b in self.bindings]
        if requested_version < 3 and self.has_conditions:
            version = 1
            for b in bindings:
                condition = b.pop("condition", None)
                if condition is not None:
                    b["role"] = f"{b['role']}_withcond_{condition_hash(condition)}"
        body: dict[str, Any] = {"version": version, "etag": self.etag}
        if bindings:
            body["bindings"] = bindings
        return {**body, **(extra or {})}

    @property
    def has_conditions(self) -> bool:
        return any("condition" in b for b in self.bindings)

    def members_with(self, permission: str) -> set[str]:
        out: set[str] = set()
        for b in self.bindings:
            # Conditions are not evaluated: a conditional binding is treated as not granting,
            # the safe direction for a test double.
            if "condition" not in b and role_grants(b["role"], permission):
                out.update(b["members"])
        return out

    def has_binding(self, role: str, member: str) -> bool:
        return any(b["role"] == role and member in b["members"] for b in self.bindings)

    def add_binding(self, role: str, member: str) -> None:
        """Seeding helper (not an API call): adds without checking and bumps the etag."""
        for b in self.bindings:
            if b["role"] == role and "condition" not in b:
                b["members"] = sorted(set(b["members"]) | {member})
                break
        else:
            self.bindings.append({"role": role, "members": [member]})
            self.bindings.sort(key=lambda b: b["role"])
        self.etag = new_etag()

    def replace(
        self,
        incoming: dict[str, Any],
        *,
        validate_member: Callable[[str], None],
        validate_role: Callable[[str], None],
        stale: Callable[[], ApiError],
        etag_factory: Callable[[], str] = new_etag,
    ) -> None:
        """setIamPolicy: check the etag, validate, then replace the bindings.

        A missing etag overwrites unconditionally, as Google documents; a mismatching one
        raises ``stale()`` (409 ABORTED for IAM/CRM, 412 for Cloud Storage).
        """
        if not isinstance(incoming, dict):
            raise invalid("Invalid JSON payload received. 'policy' must be an object.")
        etag = incoming.get("etag")
        if etag and etag != self.etag:
            raise stale()
        version = int(incoming.get("version") or 1)
        if version not in (0, 1, 3):
            raise invalid(f"Invalid policy version {version}.")
        if etag and version < 3 and self.has_conditions:
            # Any change to a policy with conditions must be made as version 3; only a
            # write without an etag may overwrite it (and loses its conditions).
            raise invalid("The policy has conditional role bindings: setIamPolicy must "
                          "specify policy version 3 (see "
                          "https://cloud.google.com/iam/help/conditions/resource-policies).")
        merged: dict[tuple[str, str], set[str]] = {}
        conditions: dict[tuple[str, str], dict] = {}
        for b in incoming.get("bindings") or []:
            role = b.get("role", "")
            if not role:
                raise invalid("Policy binding must have a role.")
            validate_role(role)
            condition = b.get("condition")
            if condition is not None and version < 3:
                raise invalid("Conditional bindings require policy version 3.")
            key = (role, repr(sorted(condition.items())) if condition else "")
            for member in b.get("members") or []:
                check_member_syntax(member)
                validate_member(member)
            merged.setdefault(key, set()).update(b.get("members") or [])
            if condition:
                conditions[key] = condition
        bindings = []
        for key in sorted(merged):
            if merged[key]:
                binding: dict[str, Any] = {"role": key[0], "members": sorted(merged[key])}
                if key in conditions:
                    binding["condition"] = conditions[key]
                bindings.append(binding)
        self.bindings = bindings
        self.version = 3 if conditions else 1
        self.etag = etag_factory()


def condition_hash(condition: dict[str, Any]) -> str:
    """The 20 hex digits after ``_withcond_`` (opaque on Google; stable per condition here)."""
    return hashlib.sha256(json.dumps(condition, sort_keys=True).encode()).hexdigest()[:20]


def requested_version(value: Any) -> int:
    """``options.requestedPolicyVersion`` (absent: 0); anything but 0, 1 or 3 is refused."""
    try:
        version = int(value or 0)
    except (TypeError, ValueError):
        version = -1
    if version not in (0, 1, 3):
        raise invalid(f"Invalid requested policy version {value}; valid values are 0, 1 and 3.")
    return version


def check_member_syntax(member: str) -> None:
    if member in _SPECIAL_MEMBERS:
        return
    if not member.startswith(_MEMBER_KINDS) or member.endswith(":"):
        raise invalid(f"Invalid member type: {member}")


def principal_members(member: str, also: Iterable[str] = ()) -> set[str]:
    """The member strings a caller matches in bindings (besides project conveniences).

    ``also`` holds a federated caller's other identifiers: its ``principal://`` subject and
    the ``principalSet://`` sets it belongs to (the pool's ``/*``, mapped attributes, a GKE
    namespace), which Google's IAM matches exactly as written in a binding.
    """
    return {member, *also, "allAuthenticatedUsers", "allUsers"}


def any_member_allowed(candidates: Iterable[str], allowed: set[str]) -> bool:
    return any(c in allowed for c in candidates)
