"""module_utils._runner: one runner for module processes and in-process runs, same results."""

from __future__ import annotations

import io
import json
import sys
import types
from contextlib import redirect_stdout

import pytest
from ansible.module_utils import _internal, basic

from ansible_collections.prow.build_cluster.plugins.module_utils import _runner
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError

SECRET = "s3cr3t-token-value"


def fake_impl(run, argument_spec=None, **kwargs):
    """An impl module: module_kwargs() and run(module), like module_utils/impl/<name>.py."""
    spec = argument_spec or {
        "name": {"type": "str", "required": True},
        "token": {"type": "str", "no_log": True},
        "host": {"type": "str"},
        "gke": {"type": "str"},
    }
    impl = types.ModuleType("fake_impl")
    impl.module_kwargs = lambda: {"argument_spec": dict(spec), "supports_check_mode": True,
                                  "mutually_exclusive": [("host", "gke")], **kwargs}
    impl.run = run
    return impl


def internal(check_mode=False, diff=False, no_log=False):
    """The _ansible_* arguments ActionBase._update_module_args adds (the ones that matter here)."""
    return {"_ansible_check_mode": check_mode, "_ansible_diff": diff, "_ansible_no_log": no_log,
            "_ansible_module_name": "prow.build_cluster.fake", "_ansible_remote_tmp": "/tmp", "_ansible_verbosity": 0}


def in_process(impl, args, **flags):
    return json.loads(_runner.run_in_process(impl, {**args, **internal(**flags)}))


def echo(module):
    module.exit_json(changed=module.check_mode, check_mode=module.check_mode, diff_mode=module._diff,
                     echoed=module.params["token"], text=f"token is {module.params['token']}")


def test_no_log_values_are_masked_in_the_result_and_in_invocation():
    result = in_process(fake_impl(echo), {"name": "a", "token": SECRET})
    assert SECRET not in json.dumps(result)
    assert result["invocation"]["module_args"]["token"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert result["invocation"]["module_args"]["name"] == "a"
    assert result["echoed"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" and result["text"] == "token is ********"
    # The internal arguments are AnsibleModule's, not options of the module.
    assert not [key for key in result["invocation"]["module_args"] if key.startswith("_ansible_")]


def test_values_added_to_no_log_values_at_run_time_are_masked():
    def mint(module):
        module.no_log_values.add("minted-" + SECRET)
        module.exit_json(changed=True, kubeconfig="token: minted-" + SECRET)
    result = in_process(fake_impl(mint), {"name": "a"})
    assert SECRET not in json.dumps(result) and result["kubeconfig"] == "token: ********"


def test_check_and_diff_mode_reach_the_module():
    impl = fake_impl(echo)
    assert in_process(impl, {"name": "a"}, check_mode=True, diff=True)["check_mode"] is True
    result = in_process(impl, {"name": "a"})
    assert result["check_mode"] is False and result["diff_mode"] is False and result["changed"] is False
    assert in_process(impl, {"name": "a"}, diff=True)["diff_mode"] is True


def test_a_module_without_check_mode_support_is_skipped_in_check_mode():
    impl = fake_impl(lambda module: pytest.fail("must not run"), supports_check_mode=False)
    impl.module_kwargs = lambda: {"argument_spec": {"name": {"type": "str"}}, "supports_check_mode": False}
    result = in_process(impl, {"name": "a"}, check_mode=True)
    assert result["skipped"] is True and "does not support check mode" in result["msg"]


@pytest.mark.parametrize("args, message", [
    ({}, "missing required arguments: name"),
    ({"name": "a", "host": "h", "gke": "g"}, "parameters are mutually exclusive: host|gke"),
    ({"name": "a", "bogus": 1}, "Unsupported parameters for (prow.build_cluster.fake) module: bogus"),
])
def test_invalid_arguments_fail_before_run(args, message):
    result = in_process(fake_impl(lambda module: pytest.fail("must not run")), {**args, "token": SECRET})
    assert result["failed"] is True and message in result["msg"]
    assert SECRET not in json.dumps(result)


def test_an_uncaught_api_error_is_the_module_failure_with_its_details():
    def broken(module):
        raise ApiError("namespace test-pods", 403, f"forbidden for {module.params['token']}", method="GET",
                       url="https://k8s/api/v1/namespaces/test-pods", reason="Forbidden", body={"kind": "Status"})
    result = in_process(fake_impl(broken), {"name": "a", "token": SECRET})
    assert result["failed"] is True
    assert result["msg"] == "GET namespace test-pods: HTTP 403 Forbidden: forbidden for ********"
    assert result["status"] == 403 and result["resource"] == "namespace test-pods" and result["reason"] == "Forbidden"
    assert result["request"] == {"method": "GET", "url": "https://k8s/api/v1/namespaces/test-pods"}
    assert result["error"] == {"kind": "Status"}


def test_an_api_error_the_module_handles_is_not_a_failure():
    def absent_is_fine(module):
        try:
            raise ApiError("namespace x", 404, "not found")
        except ApiError as err:
            module.exit_json(changed=False, status=err.status)
    assert in_process(fake_impl(absent_is_fine), {"name": "a"}) == {
        "changed": False, "status": 404, "invocation": {"module_args": {"name": "a", "token": None, "host": None, "gke": None}}}


def test_any_other_exception_is_a_masked_failure_and_not_a_dead_worker():
    def bug(module):
        raise KeyError(f"no {module.params['token']}")
    result = in_process(fake_impl(bug), {"name": "a", "token": SECRET})
    assert result["failed"] is True and "KeyError" in result["msg"] and SECRET not in json.dumps(result)


def test_returning_without_a_result_is_a_failure():
    result = in_process(fake_impl(lambda module: None), {"name": "a"})
    assert result["failed"] is True and result["msg"] == "fake_impl ended without a result"


@pytest.mark.parametrize("on_controller", [True, False])
def test_warnings_and_deprecations_are_in_the_result_and_do_not_leak_into_the_next_run(monkeypatch, on_controller):
    # In a worker, module_utils knows it is on the controller, where warn() would print
    # instead of recording.
    monkeypatch.setattr(_internal, "is_controller", on_controller)

    def warns(module):
        module.warn("careful")
        module.deprecate("old option", version="2.0.0", collection_name="prow.build_cluster")
        module.exit_json(changed=False)
    result = in_process(fake_impl(warns), {"name": "a"})
    assert [w["event"]["msg"] for w in result["warnings"]] == ["careful"]
    assert [d["event"]["msg"] for d in result["deprecations"]] == ["old option"]
    again = in_process(fake_impl(echo), {"name": "b"})
    assert "warnings" not in again and "deprecations" not in again
    assert _internal.is_controller is on_controller


def warns_with_secrets(module):
    module.warn(f"the token {module.params['token']} looks odd")
    module.no_log_values.add("minted-" + SECRET)
    module.warn("minted-" + SECRET + " is new", help_text="see the docs")
    module.deprecate(f"token {module.params['token']} is old", version="2.0.0", collection_name="prow.build_cluster")
    module.exit_json(changed=False)


def test_no_log_values_are_masked_in_warnings_and_deprecations():
    # AnsibleModule masks its result, not what warn() and deprecate() record.
    result = in_process(fake_impl(warns_with_secrets), {"name": "a", "token": SECRET})
    assert SECRET not in json.dumps(result)
    assert [w["event"]["msg"] for w in result["warnings"]] == ["the token ******** looks odd", "******** is new"]
    assert result["warnings"][1]["event"]["help_text"] == "see the docs"
    assert [d["event"]["msg"] for d in result["deprecations"]] == ["token ******** is old"]
    # Without the masking (AnsibleModule's own warn), the secret would be there: the test can fail.
    plain = fake_impl(lambda module: (basic.AnsibleModule.warn(module, module.params["token"]), module.exit_json())[1])
    assert SECRET in json.dumps(in_process(plain, {"name": "a", "token": SECRET}))


def test_cleanup_files_are_removed_on_exit_and_on_failure(tmp_path):
    for end in ("exit_json", "fail_json"):
        path = tmp_path / f"{end}.tmp"
        path.write_text("x")

        def uses_a_file(module, path=path, end=end):
            module.add_cleanup_file(str(path))
            getattr(module, end)(msg="done")
        in_process(fake_impl(uses_a_file), {"name": "a"})
        assert not path.exists()


def test_a_module_process_gives_the_same_result(monkeypatch):
    """main(): run_module(impl, AnsibleModule) reads stdin's JSON and prints the same result."""
    def real_process(impl, args):
        monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode())
        monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", _runner.SERIALIZATION_PROFILE)
        out = io.StringIO()
        with redirect_stdout(out), pytest.raises(SystemExit):
            _runner.run_module(impl, basic.AnsibleModule)
        return json.loads(out.getvalue())

    def broken(module):
        module.warn("w")
        raise ApiError("bucket b", 500, f"boom {module.params['token']}")
    for impl in (fake_impl(echo), fake_impl(broken), fake_impl(warns_with_secrets)):
        args = {"name": "a", "token": SECRET, **internal(check_mode=True)}
        in_worker = json.loads(_runner.run_in_process(impl, args))
        assert real_process(impl, args) == in_worker and in_worker["invocation"]["module_args"]["token"] != SECRET


def test_run_in_process_refuses_a_module_that_exits_without_a_result():
    def leaves(module):
        sys.exit(0)
    with pytest.raises(RuntimeError, match="exited without a result"):
        _runner.run_in_process(fake_impl(leaves), {"name": "a", **internal()})
