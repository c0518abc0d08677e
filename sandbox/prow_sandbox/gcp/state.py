"""The fake's in-memory world: projects, principals, tokens and every service's resources.

One :class:`State` per fake, guarded by one re-entrant lock that request handlers hold for
the whole call, so every API call is atomic (Google gives no stronger guarantee, and tests
get deterministic read-modify-write races only through fault injection). Service modules
keep their resources in the dicts declared here so that reset and snapshot see everything.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import ApiError, permission_denied
from .policy import Policy, principal_members

ACCESS_TOKEN_LIFETIME = 3600
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def now_rfc3339() -> str:
    """Timestamps as Google writes them (UTC, 'Z', microseconds for ordering)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Principal:
    """Who made a call: ``member`` is the IAM member string that bindings name."""

    member: str  # user:EMAIL | serviceAccount:EMAIL | serviceAccount:POOL[NS/KSA] | principal://...
    federated: bool = False  # an STS token (a Kubernetes service account, a pool's subject)
    # A federated caller's other member strings: principal:// and principalSet:// ones.
    also: tuple[str, ...] = ()

    @property
    def email(self) -> str:
        return self.member.split(":", 1)[1]


@dataclass
class Token:
    value: str
    principal: Principal
    expires: float
    scopes: tuple[str, ...]


@dataclass
class Project:
    project_id: str
    number: str
    name: str
    policy: Policy = field(default_factory=Policy)
    create_time: str = field(default_factory=now_rfc3339)

    def to_json(self) -> dict[str, Any]:
        # CRM v1 Project resource.
        return {
            "projectNumber": self.number,
            "projectId": self.project_id,
            "lifecycleState": "ACTIVE",
            "name": self.name,
            "createTime": self.create_time,
            "parent": {"type": "organization", "id": "100000000000"},
        }


@dataclass
class ServiceAccountKey:
    key_id: str
    public_pem: bytes
    created: str = field(default_factory=now_rfc3339)


@dataclass
class ServiceAccount:
    project_id: str
    account_id: str
    unique_id: str
    display_name: str = ""
    description: str = ""
    disabled: bool = False
    etag: str = "MDEwMjE5MjA="
    policy: Policy = field(default_factory=Policy)
    keys: dict[str, ServiceAccountKey] = field(default_factory=dict)
    # Eventual consistency: what the next reads of the new account answer, in order (404 or
    # 403 while it is not visible, 200 once it is); when used up it stays visible.
    hidden: list[int] = field(default_factory=list)

    @property
    def email(self) -> str:
        return f"{self.account_id}@{self.project_id}.iam.gserviceaccount.com"

    @property
    def member(self) -> str:
        return f"serviceAccount:{self.email}"


@dataclass
class UserAccount:
    email: str
    client_id: str
    client_secret: str
    refresh_token: str


@dataclass
class Config:
    """Behaviour switches tests flip through the admin API (reset with the state)."""

    # IAM eventual consistency: a new service account is "not found" for this many reads.
    iam_new_sa_hidden_reads: int = 0
    # The same, spelled out: what successive reads of a new account answer, e.g.
    # "404,403,200,404": Google may say 403 as well as 404 right after creation, and an
    # account seen once may vanish once more (200 = visible). Applies after the hidden reads.
    iam_new_sa_visibility: str = ""
    # GKE: how many polls an operation reports RUNNING before DONE (at least 1).
    gke_running_polls: int = 1
    # GKE: the next N operations finish DONE with an error (and create leaves ERROR).
    gke_fail_next_operations: int = 0
    # Secret Manager: the next N :access answers carry data that does not match their dataCrc32c
    # (corruption in transit, which clients detect with the checksum).
    secretmanager_corrupt_next_access: int = 0
    # GKE: the next N mutating calls find GKE repairing or upgrading the cluster itself
    # (400 "Cluster is currently being created, deleted, updated or repaired ...").
    gke_maintenance_rejects: int = 0
    # GKE: seconds an operation of each type (CREATE_CLUSTER, UPDATE_CLUSTER, UPGRADE_NODES,
    # CREATE_NODE_POOL, DELETE_NODE_POOL, DELETE_CLUSTER) stays RUNNING at least, counted from
    # the call, as real GKE takes minutes; types not named finish as soon as their work does.
    # Set as {"CREATE_CLUSTER": 60} or, from a command line, "CREATE_CLUSTER=60,UPGRADE_NODES=5".
    gke_operation_latency: dict[str, float] = field(default_factory=dict)

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise KeyError(key)
            if key == "gke_operation_latency":
                value = parse_operation_latency(value)
            else:
                value = type(getattr(self, key))(value)
            if key == "iam_new_sa_visibility" and not all(
                    code in ("200", "403", "404") for code in value.replace(" ", "").split(",") if code):
                raise ValueError("iam_new_sa_visibility: 200, 403 and 404, comma-separated")
            setattr(self, key, value)


GKE_OPERATION_TYPES = ("CREATE_CLUSTER", "DELETE_CLUSTER", "UPDATE_CLUSTER", "UPGRADE_NODES",
                       "CREATE_NODE_POOL", "DELETE_NODE_POOL")


def parse_operation_latency(value: dict[str, Any] | str) -> dict[str, float]:
    """``{"CREATE_CLUSTER": 60}`` or ``"CREATE_CLUSTER=60,UPGRADE_NODES=5"`` (the command-line
    form) as a dict; unknown operation types and negative seconds are refused, so a typo
    cannot silently leave an operation fast."""
    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.replace(" ", "").split(",") if item]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError("gke_operation_latency: TYPE=SECONDS, comma-separated")
        value = dict(pairs)
    latency = {str(op_type).upper(): float(seconds) for op_type, seconds in dict(value).items()}
    unknown = sorted(set(latency) - set(GKE_OPERATION_TYPES))
    if unknown or any(seconds < 0 for seconds in latency.values()):
        raise ValueError(f"gke_operation_latency: seconds >= 0 per operation type, of "
                         f"{', '.join(GKE_OPERATION_TYPES)} (got {', '.join(unknown) or 'a negative delay'})")
    return latency


class State:
    """Everything the fake knows. Hold :attr:`lock` while reading or writing."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config = Config()
        self.projects: dict[str, Project] = {}
        self.service_accounts: dict[str, ServiceAccount] = {}  # by email
        self.users: dict[str, UserAccount] = {}  # by email
        self.tokens: dict[str, Token] = {}
        # key id -> service account email, for JWT assertions and self-signed JWTs
        self.key_owner: dict[str, str] = {}
        # Workload Identity pools ("P.svc.id.goog") that exist: created with the project's
        # first cluster that enables Workload Identity, and kept afterwards, as on Google.
        self.identity_pools: set[str] = set()
        # Workload Identity Federation pools and their providers (wif.py), by
        # (project number, pool id) and (project number, pool id, provider id), and the
        # long-running operations their writes return, by name.
        self.wif_pools: dict[tuple[str, str], Any] = {}
        self.wif_providers: dict[tuple[str, str, str], Any] = {}
        self.wif_operations: dict[str, Any] = {}
        # Per-service resources (see the service modules for their types).
        self.buckets: dict[str, Any] = {}
        self.secrets: dict[tuple[str, str], Any] = {}  # (project number, secret id)
        self.clusters: dict[tuple[str, str, str], Any] = {}  # (project id, location, name)
        self.operations: dict[str, Any] = {}
        self._ids = itertools.count(100000000000000000001)

    # ------------------------------------------------------------------ lookups

    def new_unique_id(self) -> str:
        return str(next(self._ids))

    def project(self, ref: str) -> Project | None:
        """A project by ID or number (APIs accept both)."""
        if ref in self.projects:
            return self.projects[ref]
        return next((p for p in self.projects.values() if p.number == ref), None)

    def new_account_visibility(self) -> list[int]:
        """The answers of a new account's first reads, from the two IAM switches."""
        pattern = [int(x) for x in self.config.iam_new_sa_visibility.replace(" ", "").split(",") if x]
        if any(code not in (200, 403, 404) for code in pattern):
            raise ValueError("iam_new_sa_visibility: use 200, 403 and 404, comma-separated")
        return [404] * self.config.iam_new_sa_hidden_reads + pattern

    def visible_account(self, ref: str) -> tuple[ServiceAccount | None, int | None]:
        """(account, None), or (None, 403/404) while a new account is not visible yet."""
        sa = self.service_accounts.get(ref) or next(
            (s for s in self.service_accounts.values() if s.unique_id == ref), None)
        if sa is not None and sa.hidden:
            status = sa.hidden.pop(0)
            if status != 200:
                return None, status
        return sa, None

    def service_account(self, ref: str, *, read: bool = True) -> ServiceAccount | None:
        """A service account by email or unique ID; honours eventual-consistency hiding."""
        if read:
            return self.visible_account(ref)[0]
        return self.service_accounts.get(ref) or next(
            (s for s in self.service_accounts.values() if s.unique_id == ref), None)

    # ------------------------------------------------------------------ tokens

    def issue_token(self, principal: Principal, scopes: tuple[str, ...],
                    lifetime: int = ACCESS_TOKEN_LIFETIME) -> Token:
        # "ya29." is the prefix of real Google access tokens; tools that sniff it work.
        token = Token("ya29.fake-" + secrets.token_urlsafe(32), principal,
                      time.time() + lifetime, scopes)
        self.tokens[token.value] = token
        return token

    def token(self, value: str) -> Token | None:
        token = self.tokens.get(value)
        if token is None or token.expires <= time.time():
            return None
        return token

    # ------------------------------------------------------------------ authorization

    def allowed(self, principal: Principal, permission: str, *policies: Policy) -> bool:
        """IAM allow-policy evaluation over a resource's policy and its ancestors'."""
        candidates = principal_members(principal.member, principal.also)
        for policy in policies:
            members = policy.members_with(permission)
            if candidates & members:
                return True
            # Cloud Storage's convenience members name a project's basic-role holders.
            for member in members:
                kind, _, project_id = member.partition(":")
                role = _CONVENIENCE_ROLES.get(kind)
                project = self.projects.get(project_id) if role else None
                if project and project.policy.has_binding(role, principal.member):
                    return True
        return False

    def require(self, principal: Principal, permission: str, *policies: Policy,
                error: ApiError | None = None) -> None:
        if not self.allowed(principal, permission, *policies):
            raise error or permission_denied(
                f"Permission '{permission}' denied on resource (or it may not exist).", permission)

    def project_roles(self, principal: Principal, project: Project) -> set[str]:
        return {b["role"] for b in project.policy.bindings
                if "condition" not in b and principal_members(principal.member, principal.also) & set(b["members"])}


_CONVENIENCE_ROLES = {"projectOwner": "roles/owner", "projectEditor": "roles/editor",
                      "projectViewer": "roles/viewer"}
