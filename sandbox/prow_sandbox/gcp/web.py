"""What service modules need to declare routes and handle a request.

A service module lists :class:`Route` objects; :mod:`.app` turns them into one Werkzeug
``Map`` under each service's path prefix and calls the handler with a :class:`Ctx`. The
IAM policy read/write helpers live here because four services share their semantics.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request

from .errors import ApiError, CONCURRENT_POLICY_CHANGE, aborted, invalid
from .policy import (POOL_MEMBER_RE, WI_MEMBER_RE, Policy, new_etag, pool_member_problem,
                     requested_version, role_supported)
from .state import Principal, State

if TYPE_CHECKING:
    from .server import FakeGCP

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Route:
    """One API method: ``path`` is relative to the service's base URL (Werkzeug syntax)."""

    service: str
    path: str
    methods: tuple[str, ...]
    handler: Handler
    # Whether the call changes state (for the request log's write counts). None: decided by
    # the HTTP method, which is wrong for POST reads such as getIamPolicy, so those say so.
    write: bool | None = None
    public: bool = False  # token endpoints take no bearer token
    policy_write: bool = False  # setIamPolicy: subject to the etag_race fault

    @property
    def is_write(self) -> bool:
        if self.write is not None:
            return self.write
        return any(m in ("POST", "PUT", "PATCH", "DELETE") for m in self.methods)


@dataclass
class Ctx:
    """A request being handled."""

    fake: FakeGCP
    request: Request
    route: Route
    principal: Principal | None = None
    scopes: tuple[str, ...] = ()
    answer_lost: int | None = None  # an ``after`` fault: the status the client never saw
    _body: Any = field(default=None, repr=False)

    @property
    def state(self) -> State:
        return self.fake.state

    @property
    def caller(self) -> Principal:
        assert self.principal is not None, "public routes have no caller"
        return self.principal

    def base_url(self, service: str | None = None) -> str:
        return self.fake.endpoints[service or self.route.service]

    def arg(self, name: str, default: str | None = None) -> str | None:
        return self.request.args.get(name, default)

    def body(self) -> dict[str, Any]:
        """The JSON request body ({} when empty); 400 as Google answers malformed JSON."""
        if self._body is None:
            raw = self.request.get_data()
            if not raw.strip():
                self._body = {}
            else:
                try:
                    self._body = json.loads(raw)
                except ValueError:
                    raise invalid("Invalid JSON payload received. Unexpected token.") from None
                if not isinstance(self._body, dict):
                    raise invalid("Invalid JSON payload received. Expected an object.")
        return self._body

    def etag_race(self) -> bool:
        """True if an etag_race fault fires for this request (consumes it)."""
        req = self.request
        return self.fake.faults.take_etag_race(req.method, req.path, self.route.service)


# ---------------------------------------------------------------- IAM policy helpers


def requested_policy_version(ctx: Ctx) -> int:
    """getIamPolicy's ``options.requestedPolicyVersion``: a query parameter (IAM, Secret
    Manager; ``optionsRequestedPolicyVersion`` on Cloud Storage) or, for Resource Manager's
    POST, the request body's ``options``."""
    value = ctx.arg("options.requestedPolicyVersion") or ctx.arg("optionsRequestedPolicyVersion")
    if value is None and ctx.request.method == "POST":
        value = (ctx.body().get("options") or {}).get("requestedPolicyVersion")
    return requested_version(value)


def policy_response(policy: Policy, ctx: Ctx | None = None) -> dict[str, Any]:
    """getIamPolicy as formatted for the request's requestedPolicyVersion (below 3, a policy
    with conditions comes back as version 1 with ``_withcond_`` roles). Without ``ctx`` the
    policy is returned as stored."""
    return policy.to_json(requested_version=requested_policy_version(ctx) if ctx else 3)


def validate_member(state: State, member: str) -> None:
    """Refuse members Google would refuse: unknown service accounts, nonexistent WI pools."""
    problem = pool_member_problem(member)
    if problem:
        raise invalid(problem)
    wi = WI_MEMBER_RE.match(member) or POOL_MEMBER_RE.match(member)
    pool = wi.group("pool") if wi else ""
    # A GKE pool (P.svc.id.goog) exists once a Workload Identity cluster of P does; other
    # pools' members are accepted as written, as IAM does (a pool may be created later).
    if pool.endswith(".svc.id.goog"):
        if pool not in state.identity_pools:
            raise invalid(
                f"Identity Pool does not exist ({pool}). Please check that you specified a "
                "valid resource name as returned in the `name` attribute in the "
                "configuration API.")
        return
    kind, _, email = member.partition(":")
    if kind == "serviceAccount" and email.endswith(".iam.gserviceaccount.com"):
        if state.service_account(email) is None:
            raise invalid(f"Service account {email} does not exist.")


def set_policy(ctx: Ctx, policy: Policy, incoming: Any, *, permission_prefix: str,
               basic_roles: bool = True, stale: Callable[[], ApiError] | None = None,
               etag_factory: Callable[[], str] = new_etag) -> dict[str, Any]:
    """setIamPolicy with Google's etag rules (see :meth:`Policy.replace`)."""
    if incoming is None:
        raise invalid("Request contains an invalid argument.")
    if ctx.etag_race():
        # Someone else wrote the policy since the caller read it.
        policy.etag = etag_factory()

    def check_role(role: str) -> None:
        if not role_supported(role, permission_prefix, basic_allowed=basic_roles):
            raise invalid(f"Role {role} is not supported for this resource.")

    policy.replace(incoming, validate_member=lambda m: validate_member(ctx.state, m),
                   validate_role=check_role,
                   stale=stale or (lambda: aborted(CONCURRENT_POLICY_CHANGE)),
                   etag_factory=etag_factory)
    return policy.to_json()


def test_permissions(ctx: Ctx, requested: list[str], *policies: Policy) -> dict[str, Any]:
    """testIamPermissions: the subset of ``requested`` the caller holds."""
    held = [p for p in requested if ctx.state.allowed(ctx.caller, p, *policies)]
    return {"permissions": held} if held else {}
