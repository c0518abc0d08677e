"""IAM policy merging: one member of one binding changes, everything else is passed back as read."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils import _validate, iam
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError

GSA = "serviceAccount:job@p-build.iam.gserviceaccount.com"
WI = "serviceAccount:p-build.svc.id.goog[test-pods/prowjob-default-sa]"
DIRECT = ("principal://iam.googleapis.com/projects/100000000002/locations/global/workloadIdentityPools/"
          "p-build.svc.id.goog/subject/ns/test-pods/sa/prowjob-default-sa")
COND = {"title": "expires", "expression": 'request.time < timestamp("2030-01-01T00:00:00Z")'}


def policy(*bindings, **extra):
    return {"version": 1, "etag": "BwX1", "bindings": [dict(b) for b in bindings], **extra}


def test_add_to_an_existing_binding_keeps_every_other_member_and_binding():
    before = policy(
        {"role": "roles/storage.objectAdmin", "members": ["user:a@x.com"]},
        {"role": "roles/viewer", "members": ["group:g@x.com"]},
        auditConfigs=[{"service": "allServices"}],
    )
    snapshot = copy.deepcopy(before)
    after, changed = iam.add_member(before, "roles/storage.objectAdmin", GSA)
    assert changed
    assert before == snapshot, "the policy read must not be mutated"
    assert after["bindings"][0]["members"] == sorted(["user:a@x.com", GSA])
    assert after["bindings"][1] == before["bindings"][1]
    assert after["etag"] == "BwX1", "the etag read is what makes the write safe"
    assert after["auditConfigs"] == before["auditConfigs"]
    assert after["version"] == 1


def test_add_creates_the_binding_and_is_a_noop_the_second_time():
    after, changed = iam.add_member(policy(), iam.WORKLOAD_IDENTITY_USER, WI)
    assert changed and after["bindings"] == [{"role": iam.WORKLOAD_IDENTITY_USER, "members": [WI]}]
    again, changed = iam.add_member(after, iam.WORKLOAD_IDENTITY_USER, WI)
    assert not changed and again is after


def test_an_empty_policy_without_bindings_key():
    after, changed = iam.add_member({"etag": "ACAB"}, "roles/viewer", GSA)
    assert changed and after == {"etag": "ACAB", "version": 1, "bindings": [{"role": "roles/viewer", "members": [GSA]}]}


def test_emails_compare_without_case():
    before = policy({"role": "roles/viewer", "members": ["user:alice@example.com"]})
    assert iam.add_member(before, "roles/viewer", "user:Alice@Example.com")[1] is False
    after, changed = iam.remove_member(before, "roles/viewer", "user:ALICE@example.com")
    assert changed and after["bindings"] == []


def test_conditional_and_unconditional_bindings_of_one_role_are_different_bindings():
    before = policy({"role": "roles/viewer", "members": [GSA], "condition": COND}, version=3)
    after, changed = iam.add_member(before, "roles/viewer", GSA)
    assert changed, "the member holds the role only under a condition"
    assert len(after["bindings"]) == 2
    assert after["bindings"][0] == before["bindings"][0]
    assert after["version"] == 3, "a policy with conditions must be written as version 3"


def test_version_3_when_a_condition_is_present_or_was_read():
    with_cond = iam.add_member(policy(), "roles/viewer", GSA, COND)[0]
    assert with_cond["version"] == 3 and with_cond["bindings"][0]["condition"] == COND
    # Removing the last condition changes a conditional policy: Google wants version 3.
    without = iam.remove_member(with_cond, "roles/viewer", GSA, COND)[0]
    assert without["version"] == 3 and without["bindings"] == []
    plain = iam.add_member(policy(), "roles/viewer", GSA)[0]
    assert plain["version"] == 1
    assert iam.remove_member(plain, "roles/viewer", GSA)[0]["version"] == 1


def test_remove_takes_only_that_member_and_drops_an_emptied_binding():
    before = policy(
        {"role": iam.WORKLOAD_IDENTITY_USER, "members": [WI, "serviceAccount:other.svc.id.goog[a/b]"]},
        {"role": "roles/viewer", "members": [WI]},
    )
    after, changed = iam.remove_member(before, iam.WORKLOAD_IDENTITY_USER, WI)
    assert changed
    assert after["bindings"] == [
        {"role": iam.WORKLOAD_IDENTITY_USER, "members": ["serviceAccount:other.svc.id.goog[a/b]"]},
        {"role": "roles/viewer", "members": [WI]},
    ]
    assert iam.remove_member(after, iam.WORKLOAD_IDENTITY_USER, WI) == (after, False)


@pytest.mark.parametrize("member", [
    GSA, WI, "user:a@example.com", "group:prow-oncall@example.com", "domain:example.com", "allUsers",
    "allAuthenticatedUsers", "projectViewer:my-project",
    "serviceAccount:example.com:my-project.svc.id.goog[ns/sa]",
    DIRECT,
    "principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/jobs/subject/system:serviceaccount:a:b",
    "principalSet://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/jobs/*",
    "principalSet://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/jobs/attribute.namespace/test-pods",
    "principalSet://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/p-build.svc.id.goog/namespace/test-pods",
    "principal://iam.googleapis.com/locations/global/workforcePools/staff/subject/alice",
])
def test_members_iam_accepts(member):
    assert iam.member_error(member) is None


def test_direct_member_is_the_ksa_principal_of_the_gke_pool():
    assert iam.direct_member("100000000002", "p-build.svc.id.goog", "test-pods", "prowjob-default-sa") == DIRECT
    assert _validate.principal_member_error(DIRECT) is None
    assert "not a principal://" in _validate.principal_member_error("user:a@example.com")


@pytest.mark.parametrize(("member", "why"), [
    ("job@p.iam.gserviceaccount.com", "no TYPE"),
    ("serviceaccount:job@p.iam.gserviceaccount.com", "unknown type"),
    ("user:not-an-email", "not an email"),
    ("serviceAccount:p-build.svc.id.goog[test-pods]", "Workload Identity"),
    ("serviceAccount:p-build.svc.id.goog[Test/sa]", "Workload Identity"),
    (" user:a@example.com", "spaces"),
    ("", "empty"),
    ("principal://iam.googleapis.com/x", "NUMBER"),
    # IAM names pools by project number; a project ID there is refused.
    (DIRECT.replace("projects/100000000002", "projects/p-build"), "NUMBER"),
    ("principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/jobs/*", "NUMBER"),
    ("principalSet://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/jobs/subject/x", "NUMBER"),
])
def test_members_iam_refuses_with_a_reason(member, why):
    assert why in iam.member_error(member)


@pytest.mark.parametrize("role", ["roles/storage.objectAdmin", "projects/p/roles/custom_1", "organizations/123/roles/x.y"])
def test_roles_accepted(role):
    assert iam.role_error(role) is None


@pytest.mark.parametrize("role", ["storage.objectAdmin", "roles/", "role/viewer", "roles/storage objectAdmin", None])
def test_roles_refused(role):
    assert "roles/NAME" in iam.role_error(role)


@pytest.mark.parametrize(("status", "reason", "retry"), [
    (409, "ABORTED", True),  # IAM, Resource Manager, Secret Manager: stale etag
    (412, "conditionNotMet", True),  # Cloud Storage: stale etag
    (409, "ALREADY_EXISTS", False),  # a create that lost a race is not a policy conflict
    (400, "INVALID_ARGUMENT", False),
    (403, "PERMISSION_DENIED", False),
    (503, "UNAVAILABLE", False),  # transient errors are retried per request, not by re-reading
])
def test_policy_conflicts_are_what_reads_again(status, reason, retry):
    assert iam.is_policy_conflict(ApiError("policy", status, "msg", reason=reason)) is retry
