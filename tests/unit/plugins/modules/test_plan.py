"""The plan module's logic: groups, preconditions, GCP defaults, the kubernetes.core.k8s stand-in."""

from __future__ import annotations

import json
import types

import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils.impl import plan


class Exited(Exception):
    pass


class Module:
    """What plan.run uses of AnsibleModule."""

    def __init__(self, **params):
        self.params = {"preconditions": [], "groups": [], **{k: None for k in plan.gcp.GCP_AUTH_ARGSPEC}, **params}
        self.no_log_values = set()
        self.warnings = []
        self.result = None

    def warn(self, warning):
        self.warnings.append(warning)

    def exit_json(self, **result):
        self.result = result
        raise Exited()

    def fail_json(self, **result):
        self.result = dict(result, failed=True)
        raise Exited()


def call(module, label=None, enabled=True, **args):
    return {"module": module, "args": args, "label": label, "enabled": enabled}


@pytest.fixture(name="ran")
def fixture_ran(monkeypatch):
    """Fake implementations: args.changed / args.fail say what the call does; calls are recorded."""
    ran = []

    def impl(name, gcp_auth):
        spec = {"changed": {"type": "bool", "default": False}, "fail": {"type": "str"}}
        if gcp_auth:
            spec.update(plan.gcp.GCP_AUTH_ARGSPEC)

        def run(module):
            ran.append((name, dict(module.params)))
            if module.params["fail"]:
                module.fail_json(msg=module.params["fail"])
            module.exit_json(changed=module.params["changed"])
        return types.SimpleNamespace(module_kwargs=lambda: {"argument_spec": spec}, run=run, __name__=name)

    monkeypatch.setattr(plan, "IMPLEMENTATIONS", {"gcs_bucket": impl("gcs_bucket", True), "yaml_files": impl("yaml_files", False)})
    return ran


def run_plan(**params):
    module = Module(**params)
    with pytest.raises(Exited):
        plan.run(module)
    return module.result


def test_a_group_is_in_sync_only_when_no_call_would_change(ran):
    result = run_plan(groups=[
        {"name": "a", "calls": [call("gcs_bucket"), call("yaml_files")]},
        {"name": "b", "calls": [call("gcs_bucket"), call("yaml_files", label="files", changed=True), call("gcs_bucket")]},
    ])
    assert result["changed"] is False
    assert result["in_sync"] == ["a"] and result["stale"] == ["b"]
    assert result["reasons"] == {"b": "files: would change"}
    # b's third call is not made: it may depend on the second
    assert [call_made[0] for call_made in ran] == ["gcs_bucket", "yaml_files", "gcs_bucket", "yaml_files"]


def test_a_failing_call_makes_its_group_stale_not_the_plan_failed(ran):
    result = run_plan(groups=[{"name": "a", "calls": [call("gcs_bucket", fail="403 forbidden")]}])
    assert not result.get("failed")
    assert result["stale"] == ["a"] and result["reasons"]["a"] == "gcs_bucket: 403 forbidden"


def test_a_failing_precondition_fails_the_plan_before_any_group(ran):
    result = run_plan(preconditions=[call("gcs_bucket", label="the bucket exists", fail="bucket b not found")],
                      groups=[{"name": "a", "calls": [call("yaml_files")]}])
    assert result["failed"] and result["msg"] == "pre-flight: the bucket exists: bucket b not found"
    assert len(ran) == 1


def test_a_precondition_that_would_change_is_not_an_error_and_disabled_calls_are_skipped(ran):
    result = run_plan(preconditions=[call("gcs_bucket", changed=True), call("gcs_bucket", enabled=False, fail="x")],
                      groups=[{"name": "a", "calls": [call("yaml_files", enabled=False, changed=True)]}])
    assert result["in_sync"] == ["a"]
    assert len(ran) == 1


def test_gcp_auth_options_fill_what_the_call_leaves_unset_for_modules_that_take_them(ran):
    run_plan(api_endpoints="/tmp/endpoints.json", project="p-default",
             groups=[{"name": "a", "calls": [call("gcs_bucket", project="p-own"), call("yaml_files")]}])
    bucket, files = (params for _name, params in ran)
    assert bucket["api_endpoints"] == "/tmp/endpoints.json" and bucket["project"] == "p-own"
    assert "api_endpoints" not in files


def test_invalid_call_args_make_the_group_stale_with_the_reason(ran):
    result = run_plan(groups=[{"name": "a", "calls": [call("yaml_files", bogus=1)]}])
    assert result["stale"] == ["a"] and "bogus" in result["reasons"]["a"]


DOC = {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "t", "namespace": "ns"},
       "spec": {"data": [{"key": "k", "ref": {"v": "latest"}}], "interval": "10m"}}


class FakeClient:
    def __init__(self, live):
        self.live = live
        self.paths = []

    def get(self, path, resource=None):
        self.paths.append(path)
        if path == "/api/v1":
            return {"resources": [{"name": "things", "kind": "Thing", "namespaced": True},
                                  {"name": "things/status", "kind": "Thing", "namespaced": True}]}
        return self.live


def live_object(applied=None, **spec_extra):
    applied = DOC if applied is None else applied
    obj = json.loads(json.dumps(DOC))
    obj["metadata"].update(uid="u", resourceVersion="7", annotations={plan.LAST_APPLIED: json.dumps(applied)})
    obj["spec"].update(spec_extra)
    obj["spec"]["data"][0]["ref"]["defaulted"] = True
    return obj


@pytest.mark.parametrize("live, reason", [
    (live_object(), None),
    (None, "Thing t does not exist"),
    (live_object(applied=dict(DOC, spec={})), "Thing t was last applied from another definition"),
    (live_object(interval="1h"), "Thing t differs from its definition"),
    (dict(live_object(), spec=dict(live_object()["spec"], data=[])), "Thing t differs from its definition"),
])
def test_the_apply_stand_in_needs_the_object_its_annotation_and_every_field(live, reason):
    client = FakeClient(live)
    assert plan._apply_reason(client, {}, DOC) == reason
    assert client.paths[-1] in ("/api/v1/namespaces/ns/things/t", "/api/v1")


def test_the_apply_stand_in_says_stale_for_a_kind_the_server_does_not_serve():
    doc = dict(DOC, kind="Other")
    assert "does not serve Other" in plan._apply_reason(FakeClient(live_object()), {}, doc)


def test_contains_compares_lists_item_by_item():
    assert plan._contains({"a": [{"x": 1, "y": 2}], "b": 1}, {"a": [{"x": 1}]})
    assert not plan._contains({"a": [{"x": 1}, {"x": 2}]}, {"a": [{"x": 1}]})
    assert not plan._contains({"a": "1"}, {"a": 1})


def test_every_module_the_plan_offers_has_an_implementation_with_check_mode():
    for name, impl in plan.IMPLEMENTATIONS.items():
        kwargs = impl.module_kwargs()
        assert kwargs.get("supports_check_mode"), name
        assert callable(impl.run), name
