"""IAM v1 service accounts and policies, and Cloud Resource Manager project IAM, through
google-auth's AuthorizedSession (the IAM admin client is gRPC-only)."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions

from prow_sandbox.gcp.seed import CRIER, DECK, OPERATOR

STALE = "There were concurrent policy changes"


def _sa_url(gcp, project: str, email: str = "", suffix: str = "") -> str:
    path = f"/v1/projects/{project}/serviceAccounts"
    return gcp.url("iam", path + (f"/{email}" if email else "") + suffix)


def _create_sa(gcp, operator, account_id: str | None = None, project: str | None = None) -> dict:
    project = project or gcp.build_project
    resp = operator.post(_sa_url(gcp, project), json={
        "accountId": account_id or gcp.unique("job-sa"),
        "serviceAccount": {"displayName": "ProwJob default SA", "description": "test"}})
    assert resp.status_code == 200, resp.text
    return resp.json()


# ---------------------------------------------------------------- service accounts


def test_create_get_list_delete(gcp, operator):
    sa = _create_sa(gcp, operator)
    email = sa["email"]
    assert email.endswith(f"@{gcp.build_project}.iam.gserviceaccount.com")
    assert sa["name"] == f"projects/{gcp.build_project}/serviceAccounts/{email}"
    assert sa["uniqueId"] and sa["oauth2ClientId"] and sa["etag"]
    assert sa["displayName"] == "ProwJob default SA"
    got = operator.get(_sa_url(gcp, "-", email)).json()
    assert got == sa
    by_id = operator.get(_sa_url(gcp, "-", sa["uniqueId"]))
    assert by_id.json()["email"] == email
    listed = operator.get(_sa_url(gcp, gcp.build_project)).json()["accounts"]
    assert email in [a["email"] for a in listed]
    assert operator.delete(_sa_url(gcp, gcp.build_project, email)).json() == {}
    missing = operator.get(_sa_url(gcp, "-", email))
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == "NOT_FOUND"


@pytest.mark.parametrize("account_id", ["short", "a" * 31, "Upper-case-id", "1starts-digit",
                                        "ends-with-hyphen-", "under_score_id"])
def test_invalid_account_id_is_400(gcp, operator, account_id):
    resp = operator.post(_sa_url(gcp, gcp.build_project), json={"accountId": account_id})
    assert resp.status_code == 400
    assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_duplicate_account_is_409_already_exists(gcp, operator):
    account_id = gcp.unique("dup-sa")
    _create_sa(gcp, operator, account_id)
    resp = operator.post(_sa_url(gcp, gcp.build_project), json={"accountId": account_id})
    assert resp.status_code == 409
    err = resp.json()["error"]
    assert err["status"] == "ALREADY_EXISTS"
    assert err["message"] == (f"Service account {account_id} already exists within project "
                              f"projects/{gcp.build_project}.")


def test_principal_without_role_gets_403(gcp):
    crier = gcp.session(CRIER)
    resp = crier.post(_sa_url(gcp, gcp.build_project), json={"accountId": gcp.unique("nope")})
    assert resp.status_code == 403
    assert resp.json()["error"]["status"] == "PERMISSION_DENIED"
    # Reads of an account that does not exist: 403 too, not 404 (Google does not tell).
    ghost = f"ghost-account@{gcp.build_project}.iam.gserviceaccount.com"
    assert crier.get(_sa_url(gcp, "-", ghost)).status_code == 403


def test_eventual_consistency_mode(gcp, operator):
    gcp.configure(iam_new_sa_hidden_reads=2)
    sa = _create_sa(gcp, operator)
    url = _sa_url(gcp, "-", sa["email"])
    assert [operator.get(url).status_code for _ in range(3)] == [404, 404, 200]


def test_new_account_may_answer_403_and_404_and_flip_back_once(gcp, operator):
    gcp.configure(iam_new_sa_visibility="404,403,200,404")
    sa = _create_sa(gcp, operator)
    url = _sa_url(gcp, "-", sa["email"])
    answers = [operator.get(url) for _ in range(5)]
    assert [r.status_code for r in answers] == [404, 403, 200, 404, 200]
    # The 403 is IAM's usual denial, with the ErrorInfo the official client parses.
    denied = exceptions.from_http_response(answers[1])
    assert isinstance(denied, exceptions.Forbidden)
    assert (denied.reason, denied.domain) == ("IAM_PERMISSION_DENIED", "iam.googleapis.com")
    assert denied.metadata["permission"] == "iam.serviceAccounts.get"


def test_visibility_switch_refuses_other_statuses(gcp):
    resp = requests.post(gcp.fake.base_url + "/_fake/config", timeout=10,
                         json={"iam_new_sa_visibility": "404,500"})
    assert resp.status_code == 400
    assert gcp.fake.state.config.iam_new_sa_visibility == ""  # the bad value was not kept


def test_patch_display_name_and_description(gcp, operator):
    sa = _create_sa(gcp, operator)
    url = _sa_url(gcp, gcp.build_project, sa["email"])
    patched = operator.patch(url, json={
        "serviceAccount": {"displayName": "Renamed", "description": "new words"},
        "updateMask": "displayName,description"})
    assert patched.status_code == 200, patched.text
    # Only the masked fields are guaranteed in the answer, as IAM documents.
    assert patched.json()["displayName"] == "Renamed" and "uniqueId" not in patched.json()
    got = operator.get(url).json()
    assert (got["displayName"], got["description"], got["etag"]) == ("Renamed", "new words", sa["etag"])
    # Fields outside the mask stay as they were.
    operator.patch(url, json={"serviceAccount": {"displayName": "Again", "description": "ignored"},
                              "updateMask": "displayName"})
    assert operator.get(url).json()["description"] == "new words"


@pytest.mark.parametrize("body,status", [
    ({"serviceAccount": {"displayName": "x"}}, 400),  # the mask is required
    ({"serviceAccount": {"email": "x@y.z"}, "updateMask": "email"}, 400),
    ({"serviceAccount": {"displayName": "x", "etag": "c3RhbGU="}, "updateMask": "displayName"}, 409),
])
def test_patch_refuses_what_iam_refuses(gcp, operator, body, status):
    sa = _create_sa(gcp, operator)
    resp = operator.patch(_sa_url(gcp, gcp.build_project, sa["email"]), json=body)
    assert resp.status_code == status, resp.text
    assert operator.get(_sa_url(gcp, "-", sa["email"])).json()["displayName"] == sa["displayName"]


def test_patch_needs_permission(gcp, operator):
    sa = _create_sa(gcp, operator)
    resp = gcp.session(CRIER).patch(_sa_url(gcp, gcp.build_project, sa["email"]), json={
        "serviceAccount": {"displayName": "x"}, "updateMask": "displayName"})
    assert resp.status_code == 403
    err = resp.json()["error"]
    assert err["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert err["details"][0]["reason"] == "IAM_PERMISSION_DENIED"


# ---------------------------------------------------------------- service-account IAM


def test_empty_policy_then_etag_rules(gcp, operator):
    email = _create_sa(gcp, operator)["email"]
    get_url = _sa_url(gcp, gcp.build_project, email, ":getIamPolicy")
    set_url = _sa_url(gcp, gcp.build_project, email, ":setIamPolicy")
    empty = operator.post(get_url).json()
    assert empty == {"version": 1, "etag": "ACAB"}

    binding = {"role": "roles/iam.serviceAccountUser", "members": [f"serviceAccount:{CRIER}"]}
    first = operator.post(set_url, json={"policy": {"bindings": [binding], "etag": "ACAB"}})
    assert first.status_code == 200, first.text
    assert first.json()["etag"] != "ACAB"
    assert first.json()["bindings"] == [binding]

    # The old etag is now stale: 409 ABORTED, and the policy is unchanged.
    stale = operator.post(set_url, json={"policy": {"bindings": [], "etag": "ACAB"}})
    assert stale.status_code == 409
    assert stale.json()["error"]["status"] == "ABORTED"
    assert STALE in stale.json()["error"]["message"]
    assert operator.post(get_url).json() == first.json()

    # No etag: unconditional overwrite, and again a new etag.
    second = operator.post(set_url, json={"policy": {"bindings": [
        {"role": "roles/iam.serviceAccountUser", "members": [f"serviceAccount:{DECK}"]}]}})
    assert second.status_code == 200
    assert second.json()["etag"] not in ("ACAB", first.json()["etag"])
    assert second.json()["bindings"][0]["members"] == [f"serviceAccount:{DECK}"]


def test_members_are_normalised(gcp, operator):
    email = _create_sa(gcp, operator)["email"]
    resp = operator.post(_sa_url(gcp, gcp.build_project, email, ":setIamPolicy"), json={
        "policy": {"bindings": [
            {"role": "roles/iam.serviceAccountUser", "members": [f"serviceAccount:{DECK}"]},
            {"role": "roles/iam.serviceAccountUser",
             "members": [f"serviceAccount:{CRIER}", f"serviceAccount:{DECK}"]},
            {"role": "roles/iam.serviceAccountTokenCreator", "members": []}]}})
    assert resp.json()["bindings"] == [{"role": "roles/iam.serviceAccountUser", "members": [
        f"serviceAccount:{CRIER}", f"serviceAccount:{DECK}"]}]


def test_binding_an_account_that_does_not_exist_is_400(gcp, operator):
    email = _create_sa(gcp, operator)["email"]
    ghost = f"no-such-account@{gcp.build_project}.iam.gserviceaccount.com"
    resp = operator.post(_sa_url(gcp, gcp.build_project, email, ":setIamPolicy"), json={
        "policy": {"bindings": [{"role": "roles/iam.serviceAccountUser",
                                 "members": [f"serviceAccount:{ghost}"]}]}})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == f"Service account {ghost} does not exist."


def test_workload_identity_member_before_the_pool_exists_is_400(gcp, operator):
    # No cluster with Workload Identity exists in the Prow project, hence no pool.
    email = _create_sa(gcp, operator, project=gcp.prow_project)["email"]
    member = f"serviceAccount:{gcp.prow_project}.svc.id.goog[test-pods/prowjob-default-sa]"
    resp = operator.post(_sa_url(gcp, gcp.prow_project, email, ":setIamPolicy"), json={
        "policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [member]}]}})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"].startswith(
        f"Identity Pool does not exist ({gcp.prow_project}.svc.id.goog).")


@pytest.mark.parametrize("role,member", [
    ("roles/storage.objectAdmin", f"serviceAccount:{CRIER}"),  # not a role for this resource
    ("roles/no.suchRole", f"serviceAccount:{CRIER}"),
    ("roles/iam.serviceAccountUser", "crier"),  # member without a type
])
def test_invalid_bindings_are_400(gcp, operator, role, member):
    email = _create_sa(gcp, operator)["email"]
    resp = operator.post(_sa_url(gcp, gcp.build_project, email, ":setIamPolicy"), json={
        "policy": {"bindings": [{"role": role, "members": [member]}]}})
    assert resp.status_code == 400, resp.text


def test_etag_race_fault(gcp, operator):
    email = _create_sa(gcp, operator)["email"]
    get_url = _sa_url(gcp, gcp.build_project, email, ":getIamPolicy")
    set_url = _sa_url(gcp, gcp.build_project, email, ":setIamPolicy")
    gcp.inject(kind="etag_race", path=r":setIamPolicy$", service="iam")
    policy = operator.post(get_url).json()
    policy["bindings"] = [{"role": "roles/iam.serviceAccountUser",
                           "members": [f"serviceAccount:{CRIER}"]}]
    assert operator.post(set_url, json={"policy": policy}).status_code == 409
    # The read-modify-write retry Google asks for then succeeds.
    policy = {**operator.post(get_url).json(), "bindings": policy["bindings"]}
    assert operator.post(set_url, json={"policy": policy}).status_code == 200


def test_test_iam_permissions(gcp, operator):
    email = _create_sa(gcp, operator)["email"]
    perms = ["iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.get"]
    url = _sa_url(gcp, gcp.build_project, email, ":testIamPermissions")
    assert operator.post(url, json={"permissions": perms}).json() == {"permissions": perms}


def test_deleting_an_account_renames_its_bindings(gcp, operator):
    victim = _create_sa(gcp, operator)
    holder = _create_sa(gcp, operator)["email"]
    member = f"serviceAccount:{victim['email']}"
    operator.post(_sa_url(gcp, gcp.build_project, holder, ":setIamPolicy"), json={
        "policy": {"bindings": [{"role": "roles/iam.serviceAccountUser", "members": [member]}]}})
    operator.delete(_sa_url(gcp, gcp.build_project, victim["email"]))
    policy = operator.post(_sa_url(gcp, gcp.build_project, holder, ":getIamPolicy")).json()
    assert policy["bindings"][0]["members"] == [f"deleted:{member}?uid={victim['uniqueId']}"]


CONDITION = {"title": "until-2030", "expression": 'request.time < timestamp("2030-01-01T00:00:00Z")'}


def test_policy_read_below_version_3_hides_conditions(gcp, operator):
    email = _create_sa(gcp, operator)["email"]
    get_url = _sa_url(gcp, gcp.build_project, email, ":getIamPolicy")
    plain = {"role": "roles/iam.serviceAccountUser", "members": [f"serviceAccount:{DECK}"]}
    conditional = {"role": "roles/iam.serviceAccountTokenCreator",
                   "members": [f"serviceAccount:{CRIER}"], "condition": CONDITION}
    written = operator.post(_sa_url(gcp, gcp.build_project, email, ":setIamPolicy"), json={
        "policy": {"version": 3, "bindings": [plain, conditional]}})
    assert written.status_code == 200, written.text
    v3 = operator.post(get_url, params={"options.requestedPolicyVersion": 3}).json()
    assert v3["version"] == 3 and conditional in v3["bindings"] and plain in v3["bindings"]
    for params in ({}, {"options.requestedPolicyVersion": 1}):
        v1 = operator.post(get_url, params=params).json()
        assert v1["version"] == 1
        assert plain in v1["bindings"]
        hidden = [b for b in v1["bindings"] if b["role"] != plain["role"]]
        assert len(hidden) == 1 and "condition" not in hidden[0]
        assert hidden[0]["role"].startswith("roles/iam.serviceAccountTokenCreator_withcond_")
    assert operator.post(get_url, params={"options.requestedPolicyVersion": 2}).status_code == 400


def test_a_version_1_write_over_conditions_is_refused(gcp, operator):
    email = _create_sa(gcp, operator)["email"]
    set_url = _sa_url(gcp, gcp.build_project, email, ":setIamPolicy")
    conditional = {"role": "roles/iam.serviceAccountTokenCreator",
                   "members": [f"serviceAccount:{CRIER}"], "condition": CONDITION}
    etag = operator.post(set_url, json={"policy": {"version": 3, "bindings": [conditional]}}).json()["etag"]
    # What a client unaware of conditions does: read as version 1, write it back.
    v1 = operator.post(_sa_url(gcp, gcp.build_project, email, ":getIamPolicy")).json()
    assert v1["etag"] == etag
    resp = operator.post(set_url, json={"policy": v1})
    assert resp.status_code == 400, resp.text
    v3 = operator.post(_sa_url(gcp, gcp.build_project, email, ":getIamPolicy"),
                       params={"options.requestedPolicyVersion": 3}).json()
    assert v3["bindings"] == [conditional]


def test_project_policy_version_comes_in_the_body(gcp, operator):
    url = gcp.url("cloudresourcemanager", f"/v1/projects/{gcp.prow_project}")
    policy = operator.post(url + ":getIamPolicy", json={"options": {"requestedPolicyVersion": 3}}).json()
    conditional = {"role": "roles/viewer", "members": [f"serviceAccount:{CRIER}"], "condition": CONDITION}
    policy = dict(policy, version=3, bindings=policy["bindings"] + [conditional])
    assert operator.post(url + ":setIamPolicy", json={"policy": policy}).status_code == 200
    try:
        v3 = operator.post(url + ":getIamPolicy", json={"options": {"requestedPolicyVersion": 3}}).json()
        assert conditional in v3["bindings"]
        v1 = operator.post(url + ":getIamPolicy", json={}).json()
        assert v1["version"] == 1 and not any("condition" in b for b in v1["bindings"])
        assert any(b["role"].startswith("roles/viewer_withcond_") for b in v1["bindings"])
    finally:
        v3 = operator.post(url + ":getIamPolicy", json={"options": {"requestedPolicyVersion": 3}}).json()
        v3["bindings"] = [b for b in v3["bindings"] if "condition" not in b]
        # Removing a binding from a policy with conditions is a version 3 write too.
        assert operator.post(url + ":setIamPolicy", json={"policy": dict(v3, version=1)}).status_code == 400
        assert operator.post(url + ":setIamPolicy", json={"policy": dict(v3, version=3)}).status_code == 200


# ---------------------------------------------------------------- IAM Credentials


def test_generate_access_token_needs_token_creator(gcp, operator):
    target = _create_sa(gcp, operator)["email"]
    url = gcp.url("iamcredentials", f"/v1/projects/-/serviceAccounts/{target}:generateAccessToken")
    crier = gcp.session(CRIER)
    denied = crier.post(url, json={"scope": ["https://www.googleapis.com/auth/cloud-platform"]})
    assert denied.status_code == 403
    operator.post(_sa_url(gcp, gcp.build_project, target, ":setIamPolicy"), json={"policy": {
        "bindings": [{"role": "roles/iam.serviceAccountTokenCreator",
                      "members": [f"serviceAccount:{CRIER}"]}]}})
    assert crier.post(url, json={}).status_code == 400  # scope is required
    resp = crier.post(url, json={"scope": ["https://www.googleapis.com/auth/cloud-platform"],
                                 "lifetime": "600s"})
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"accessToken", "expireTime"}
    # The minted token acts as the target account.
    mark = gcp.mark()
    requests.get(gcp.url("cloudresourcemanager", f"/v1/projects/{gcp.build_project}"),
                 headers={"Authorization": f"Bearer {resp.json()['accessToken']}"}, timeout=10)
    assert gcp.fake.requests(since=mark)[0]["principal"] == f"serviceAccount:{target}"


# ---------------------------------------------------------------- Cloud Resource Manager


def test_project_get_by_id_and_number(gcp, operator):
    by_id = operator.get(gcp.url("cloudresourcemanager", "/v1/projects/prow-sandbox-prow")).json()
    assert by_id["projectNumber"] == "100000000001"
    by_number = operator.get(gcp.url("cloudresourcemanager", "/v1/projects/100000000001")).json()
    assert by_number == by_id
    v3 = operator.get(gcp.url("cloudresourcemanager", "/v3/projects/prow-sandbox-prow")).json()
    assert v3["name"] == "projects/100000000001" and v3["state"] == "ACTIVE"


@pytest.mark.parametrize("project", ["no-such-project-1", "prow-sandbox-other"])
def test_unknown_or_foreign_project_is_403(gcp, operator, project):
    resp = operator.get(gcp.url("cloudresourcemanager", f"/v1/projects/{project}"))
    assert resp.status_code == 403
    assert resp.json()["error"] == {"code": 403, "status": "PERMISSION_DENIED",
                                    "message": "The caller does not have permission"}


def test_project_policy_read_modify_write(gcp, operator):
    url = gcp.url("cloudresourcemanager", f"/v1/projects/{gcp.build_project}")
    policy = operator.post(url + ":getIamPolicy", json={}).json()
    assert {"role": "roles/owner", "members": [f"serviceAccount:{OPERATOR}",
                                               "user:operator@prow-sandbox.test"]} in policy["bindings"]
    stale = dict(policy)
    policy["bindings"].append({"role": "roles/container.admin",
                               "members": [f"serviceAccount:{CRIER}"]})
    written = operator.post(url + ":setIamPolicy", json={"policy": policy})
    assert written.status_code == 200
    assert written.json()["etag"] != policy["etag"]
    again = operator.post(url + ":setIamPolicy", json={"policy": stale})
    assert again.status_code == 409 and again.json()["error"]["status"] == "ABORTED"
    # A principal without resourcemanager.projects.setIamPolicy cannot write.
    assert gcp.session(CRIER).post(url + ":setIamPolicy",
                                   json={"policy": written.json()}).status_code == 403
    # Clean up: other tests rely on the crier holding no project role.
    fresh = operator.post(url + ":getIamPolicy", json={}).json()
    fresh["bindings"] = [b for b in fresh["bindings"] if b["role"] != "roles/container.admin"]
    assert operator.post(url + ":setIamPolicy", json={"policy": fresh}).status_code == 200
