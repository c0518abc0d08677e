# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""IAM policies of Google resources: where each is read and written, and the etag read-modify-write."""

from __future__ import annotations

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError, TargetMissing
from ansible_collections.prow.build_cluster.plugins.module_utils._retry import call_with_retry
from ansible_collections.prow.build_cluster.plugins.module_utils.iam import is_policy_conflict


class PolicyTarget:
    """Where one resource's IAM policy is read and written: each service spells it differently."""

    def __init__(self, resource, service, get, put, wrap, client_name=None):
        self.resource = resource  # for messages: "bucket my-bucket"
        self.service = service
        self.get = get  # (method, path, params)
        self.put = put  # (method, path)
        self.wrap = wrap  # body of the write: {"policy": policy} or the policy itself
        self.client_name = client_name  # Secret Manager: read and written through its client library

    @classmethod
    def project(cls, project):
        path = f"/v1/projects/{project}"
        return cls(f"project {project}", "cloudresourcemanager", ("POST", path + ":getIamPolicy", None),
                   ("POST", path + ":setIamPolicy"), True)

    @classmethod
    def service_account(cls, email):
        # "-" lets IAM find the account's project itself; the GSA may live anywhere.
        path = f"/v1/projects/-/serviceAccounts/{email}"
        return cls(f"service account {email}", "iam", ("POST", path + ":getIamPolicy", {"options.requestedPolicyVersion": 3}),
                   ("POST", path + ":setIamPolicy"), True)

    @classmethod
    def bucket(cls, bucket):
        path = f"/storage/v1/b/{bucket}/iam"
        return cls(f"bucket {bucket}", "storage", ("GET", path, {"optionsRequestedPolicyVersion": 3}), ("PUT", path), False)

    @classmethod
    def secret(cls, project, secret):
        path = f"/v1/projects/{project}/secrets/{secret}"
        return cls(f"secret projects/{project}/secrets/{secret}", "secretmanager",
                   ("GET", path + ":getIamPolicy", {"options.requestedPolicyVersion": 3}), ("POST", path + ":setIamPolicy"), True,
                   client_name=f"projects/{project}/secrets/{secret}")


def _secret_manager(session):
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.prow.build_cluster.plugins.module_utils.secretmanager import SecretManager

    return SecretManager(session)


def read_policy(session, target, retry_on=None, missing_would=None):
    """The policy as version 3: below 3 Google hides conditional bindings (IAM renames their
    roles ``ROLE_withcond_HASH``, Cloud Storage refuses), and writing back what a version 1
    read shows would lose or break them.

    ``missing_would`` (check mode only: what the caller would do): a resource that does not
    exist (404) raises TargetMissing, with no retry; a real run creates it in an earlier task.
    """
    if missing_would:
        retry_on = _not_404(retry_on)
    try:
        if target.client_name:
            return _secret_manager(session).get_policy(target.client_name, f"{target.resource} IAM policy")
        method, path, params = target.get
        # Resource Manager takes the requested version in the body; the others as a query parameter.
        body = {"options": {"requestedPolicyVersion": 3}} if target.service == "cloudresourcemanager" else None
        return session.request(method, target.service, path, f"{target.resource} IAM policy", params=params, json_body=body,
                               retry_on=retry_on)
    except ApiError as err:
        if missing_would and err.status == 404:
            raise TargetMissing(target.resource, f"{missing_would} once it exists") from None
        raise


def _not_404(retry_on):
    """``retry_on`` except for 404: in check mode nothing is being created, so nothing to wait for."""
    return lambda exc: getattr(exc, "status", None) != 404 and bool(retry_on and retry_on(exc))


def write_policy(session, target, policy):
    if target.client_name:
        return _secret_manager(session).set_policy(target.client_name, policy, f"{target.resource} IAM policy")
    method, path = target.put
    body = {"policy": policy} if target.wrap else policy
    return session.request(method, target.service, path, f"{target.resource} IAM policy", json_body=body)


def update_policy(session, target, mutate, check_mode=False, retry_on=None, missing_would=None):
    """Read-modify-write of one IAM policy with its etag: (policy read, policy wanted, changed).

    ``mutate(policy) -> (new_policy, changed)``. The policy is written with the etag it was
    read with, so a concurrent writer makes the write fail (409 ABORTED or 412) instead of
    losing their binding or ours; then the whole read-modify-write starts again. Nothing is
    written when nothing changes, or in check mode. ``missing_would``: see read_policy
    (used in check mode only).
    """
    missing_would = missing_would if check_mode else None
    if missing_would:
        retry_on = _not_404(retry_on)

    def attempt():
        before = read_policy(session, target, missing_would=missing_would)
        after, changed = mutate(before)
        if changed and not check_mode:
            write_policy(session, target, after)
        return before, after, changed

    def again(exc):
        return is_policy_conflict(exc) or bool(retry_on and retry_on(exc))

    return call_with_retry(attempt, retry_on=again)


def member_not_yet_visible(exc):
    """IAM refuses a service account created seconds ago as a member ("does not exist")."""
    return getattr(exc, "status", None) == 400 and "does not exist" in (getattr(exc, "message", "") or "")


def account_not_yet_visible(exc):
    """A call naming a service account created seconds ago: IAM may answer 404 or 403 (and
    flip back once after a success) until the account has propagated; as a member of a
    policy it is "does not exist". Only for calls that name such an account: the retries are
    bounded, so a real denial still surfaces, a few seconds later."""
    return getattr(exc, "status", None) in (403, 404) or member_not_yet_visible(exc)
