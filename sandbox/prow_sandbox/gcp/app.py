"""The WSGI application: routing, authentication, fault injection, logging, error shapes.

Each Google service is served under a path prefix named after its real host
(``/iam``, ``/storage``, ``/secretmanager``...), because IAM and Cloud Resource Manager both
use ``/v1/projects/...``; a client's base URL is ``http://127.0.0.1:PORT/<service>``. Admin
calls (``/_fake/...``) and the GKE token webhook (``/_gke/...``) are not Google APIs: they
need no token and are not logged.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import auth, crm, gke, iam, oauth2, secretmanager, storage, sts, wif
from .errors import ApiError, OAuthError, error_info
from .faults import DEFAULT_MESSAGES
from .web import Ctx, Route

if TYPE_CHECKING:
    from .server import FakeGCP

log = logging.getLogger(__name__)

SERVICES = ("iam", "iamcredentials", "sts", "storage", "secretmanager", "container",
            "cloudresourcemanager", "oauth2")
ROUTES: list[Route] = [*iam.ROUTES, *wif.ROUTES, *crm.ROUTES, *storage.ROUTES, *secretmanager.ROUTES,
                       *gke.ROUTES, *sts.ROUTES, *oauth2.ROUTES]

_AUTH = "https://www.googleapis.com/auth/"
# OAuth scopes that admit a token to each service; cloud-platform admits it everywhere.
# Read-only scopes admit only calls that do not write.
SCOPES = {
    "storage": {"devstorage.full_control", "devstorage.read_write"},
    "iam": {"iam"},
    "iamcredentials": {"iam"},
    "cloudresourcemanager": {"cloudplatformprojects"},
}
READ_ONLY_SCOPES = {"cloud-platform.read-only", "devstorage.read_only",
                    "cloudplatformprojects.read-only"}
INSUFFICIENT_SCOPES = ApiError(403, "Request had insufficient authentication scopes.",
                               "PERMISSION_DENIED")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers,
                    content_type="application/json; charset=UTF-8")


def fault_error(fault: Any, service: str) -> ApiError:
    """The error an error fault answers; a 429 carries the ErrorInfo Google's quota system sends."""
    details = None
    if fault.status == 429:
        details = [error_info("RATE_LIMIT_EXCEEDED", "googleapis.com",
                              quota_metric=f"{service}.googleapis.com/default",
                              quota_limit="defaultPerMinutePerProject",
                              service=f"{service}.googleapis.com")]
    return ApiError(fault.status, fault.message or DEFAULT_MESSAGES.get(fault.status, "Injected fault."),
                    details=details)


def _scope_ok(route: Route, scopes: tuple[str, ...]) -> bool:
    names = {s.removeprefix(_AUTH) for s in scopes}
    if "cloud-platform" in names or names & SCOPES.get(route.service, set()):
        return True
    return not route.is_write and bool(names & READ_ONLY_SCOPES)


class App:
    """The WSGI callable for one :class:`FakeGCP`."""

    def __init__(self, fake: FakeGCP) -> None:
        self.fake = fake
        self.api = Map([Rule(f"/{r.service}{r.path}", methods=list(r.methods), endpoint=r)
                        for r in ROUTES], strict_slashes=False, merge_slashes=False)
        self.admin = Map([
            Rule("/_fake/health", methods=["GET"], endpoint="health"),
            Rule("/_fake/requests", methods=["GET"], endpoint="requests"),
            Rule("/_fake/faults", methods=["GET", "POST", "DELETE"], endpoint="faults"),
            Rule("/_fake/faults/<int:fault_id>", methods=["DELETE"], endpoint="fault"),
            Rule("/_fake/config", methods=["GET", "POST"], endpoint="config"),
            Rule("/_fake/reset", methods=["POST"], endpoint="reset"),
            Rule("/_gke/tokenreview/<uid>", methods=["POST"], endpoint="tokenreview"),
            Rule("/_gke/authorize/<uid>", methods=["POST"], endpoint="authorize"),
        ], strict_slashes=False)

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        if request.path.startswith(("/_fake/", "/_gke/")):
            response = self._admin(request)
        else:
            response = self._api(request)
        return response(environ, start_response)

    # ------------------------------------------------------------ Google APIs

    def _api(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            route, args = self.api.bind_to_environ(request.environ).match()
        except (NotFound, MethodNotAllowed) as exc:
            # What Google's front end says for a URL no API serves.
            service = request.path.strip("/").split("/", 1)[0]
            err = ApiError(exc.code or 404, f"The requested URL {request.path} was not found "
                           "on this server." if exc.code == 404 else "Method not allowed.")
            return self._finish(request, service, None, started, self._error(service, err))
        ctx = Ctx(self.fake, request, route)
        faults = self.fake.faults
        fault = None
        try:
            delay = faults.delay_for(request.method, request.path, route.service)
            if delay:
                time.sleep(delay)
            if not route.public:
                with self.fake.state.lock:
                    ctx.principal, ctx.scopes = auth.authenticate(
                        self.fake.state, request.headers.get("Authorization"))
                if not _scope_ok(route, ctx.scopes):
                    raise INSUFFICIENT_SCOPES
            fault = faults.error_for(request.method, request.path, route.service)
            if fault is not None and not fault.after:
                raise fault_error(fault, route.service)
            with self.fake.state.lock:
                result = route.handler(ctx, **args)
            response = self._result(result)
        except ApiError as err:
            response = self._error(route.service, err)
        except OAuthError as err:
            response = json_response(err.body(), err.code)
        except HTTPException as exc:  # e.g. a malformed form body
            response = self._error(route.service, ApiError(exc.code or 400, exc.description or ""))
        except Exception:  # noqa: BLE001 - a bug in the fake must not look like Google's answer
            log.exception("fake GCP handler failed: %s %s", request.method, request.path)
            response = self._error(route.service, ApiError(500, "Internal error in the sandbox "
                                                           "fake (see its log)."))
        if fault is not None and fault.after:
            # Handled (a write is applied, whatever its outcome), then the answer is lost.
            ctx.answer_lost = response.status_code
            response = self._error(route.service, fault_error(fault, route.service))
        return self._finish(request, route.service, ctx, started, response)

    @staticmethod
    def _result(result: Any) -> Response:
        if isinstance(result, Response):
            return result
        if isinstance(result, tuple):
            status, body = result
            return json_response(body, status)
        return json_response(result)

    @staticmethod
    def _error(service: str, err: ApiError) -> Response:
        if service == "storage":
            if err.code == 401:  # GCS words it its own way
                err = ApiError(401, "Invalid Credentials", reason="authError", headers=err.headers,
                               extra={"locationType": "header", "location": "Authorization"})
            return json_response(err.gcs_body(), err.code, err.headers)
        return json_response(err.google_body(service), err.code, err.headers)

    def _finish(self, request: Request, service: str, ctx: Ctx | None, started: float,
                response: Response) -> Response:
        principal = ctx.principal.member if ctx is not None and ctx.principal else None
        entry = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "service": service,
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode(),
            "principal": principal,
            "status": response.status_code,
            "write": bool(ctx and ctx.route.is_write),
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
        if ctx is not None and ctx.answer_lost is not None:
            entry["answer_lost"] = ctx.answer_lost
        self.fake.log.append(entry)
        return response

    # ------------------------------------------------------------ admin API

    def _admin(self, request: Request) -> Response:
        try:
            endpoint, args = self.admin.bind_to_environ(request.environ).match()
        except HTTPException as exc:
            return json_response({"error": exc.description}, exc.code or 404)
        fake = self.fake
        try:
            body = request.get_json(silent=True) or {}
            if endpoint == "health":
                return json_response({"ok": True, **fake.info()})
            if endpoint == "requests":
                a = request.args
                entries = fake.log.entries(
                    since=int(a.get("since", 0)), service=a.get("service"),
                    method=a.get("method"), path=a.get("path"),
                    writes_only=a.get("writes_only", "").lower() in ("1", "true"))
                return json_response({"mark": fake.log.mark(), "requests": entries})
            if endpoint == "faults":
                if request.method == "POST":
                    return json_response(fake.faults.add(**body).to_json(), 201)
                if request.method == "DELETE":
                    fake.faults.clear()
                return json_response({"faults": [f.to_json() for f in fake.faults.list()]})
            if endpoint == "fault":
                found = fake.faults.remove(args["fault_id"])
                return json_response({}, 200 if found else 404)
            if endpoint == "config":
                with fake.state.lock:
                    if request.method == "POST":
                        fake.state.config.update(body)
                    return json_response(vars(fake.state.config))
            if endpoint == "reset":
                fake.reset()
                return json_response({"ok": True})
            if endpoint == "tokenreview":
                return json_response(gke.token_review(fake, args["uid"], body))
            if endpoint == "authorize":
                return json_response(gke.subject_access_review(fake, args["uid"], body))
        except (TypeError, ValueError, KeyError) as exc:
            return json_response({"error": f"bad admin request: {exc!r}"}, 400)
        return json_response({"error": "unknown admin endpoint"}, 404)
