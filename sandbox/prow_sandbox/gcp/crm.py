"""Cloud Resource Manager: project get and project IAM policy (v1; get also as v3).

Projects are seeded, not created through the API. Google answers 403 "The caller does not
have permission" both for a project that does not exist and for one the caller cannot see,
so the fake does too (a 404 here would let tests pass that fail against Google).
"""

from __future__ import annotations

from typing import Any

from .errors import permission_denied
from .state import Project
from .web import Ctx, Route, policy_response, set_policy, test_permissions

CALLER_DENIED = "The caller does not have permission"


def _project(ctx: Ctx, ref: str, permission: str) -> Project:
    project = ctx.state.project(ref)
    if project is None or not ctx.state.allowed(ctx.caller, permission, project.policy):
        raise permission_denied(CALLER_DENIED)
    return project


def get_project(ctx: Ctx, project: str) -> dict[str, Any]:
    return _project(ctx, project, "resourcemanager.projects.get").to_json()


def get_project_v3(ctx: Ctx, project: str) -> dict[str, Any]:
    p = _project(ctx, project, "resourcemanager.projects.get")
    return {"name": f"projects/{p.number}", "parent": "organizations/100000000000",
            "projectId": p.project_id, "state": "ACTIVE", "displayName": p.name,
            "createTime": p.create_time, "updateTime": p.create_time,
            "etag": f'W/"{p.number}"'}


def get_policy(ctx: Ctx, project: str) -> dict[str, Any]:
    return policy_response(
        _project(ctx, project, "resourcemanager.projects.getIamPolicy").policy, ctx)


def set_project_policy(ctx: Ctx, project: str) -> dict[str, Any]:
    p = _project(ctx, project, "resourcemanager.projects.setIamPolicy")
    return set_policy(ctx, p.policy, ctx.body().get("policy"), permission_prefix="")


def test_project_permissions(ctx: Ctx, project: str) -> dict[str, Any]:
    p = ctx.state.project(project)
    if p is None:
        raise permission_denied(CALLER_DENIED)
    return test_permissions(ctx, ctx.body().get("permissions") or [], p.policy)


ROUTES = [
    Route("cloudresourcemanager", "/v1/projects/<project>", ("GET",), get_project),
    Route("cloudresourcemanager", "/v3/projects/<project>", ("GET",), get_project_v3),
    Route("cloudresourcemanager", "/v1/projects/<project>:getIamPolicy", ("POST",), get_policy,
          write=False),
    Route("cloudresourcemanager", "/v1/projects/<project>:setIamPolicy", ("POST",),
          set_project_policy, policy_write=True),
    Route("cloudresourcemanager", "/v1/projects/<project>:testIamPermissions", ("POST",),
          test_project_permissions, write=False),
]
