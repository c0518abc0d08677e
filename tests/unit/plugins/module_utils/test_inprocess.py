"""CheckModeModule and check(): modules' run() in check mode, several in one process."""

from __future__ import annotations

import types

from ansible_collections.prow.build_cluster.plugins.module_utils import inprocess


def fake_impl(run, argument_spec=None, **kwargs):
    spec = argument_spec or {
        "name": {"type": "str", "required": True},
        "size": {"type": "int", "default": 3},
        "secret": {"type": "str", "no_log": True},
        "a": {"type": "str"},
        "b": {"type": "str"},
    }
    return types.SimpleNamespace(module_kwargs=lambda: dict(argument_spec=spec, supports_check_mode=True, **kwargs),
                                 run=run, __name__="fake")


def test_run_sees_validated_params_in_check_mode_and_its_changed_is_reported():
    seen = {}

    def run(module):
        seen.update(module.params, check_mode=module.check_mode, no_log=module.no_log)
        module.exit_json(changed=module.params["size"] == 3)

    outcome = inprocess.check(fake_impl(run), {"name": "x", "size": "3"}, set())
    assert outcome == inprocess.Outcome(changed=True)
    assert seen["size"] == 3 and seen["check_mode"] is True and seen["no_log"] is True

    outcome = inprocess.check(fake_impl(run), {"name": "x", "size": 4}, set())
    assert not outcome.changed and not outcome.failed


def test_invalid_arguments_fail_the_call_without_running_it():
    ran = []
    outcome = inprocess.check(fake_impl(ran.append), {"size": 1, "bogus": True}, set())
    assert outcome.failed
    assert "name" in outcome.msg and "bogus" in outcome.msg
    assert not ran


def test_validator_keywords_of_the_module_apply():
    impl = fake_impl(lambda module: module.exit_json(changed=False), mutually_exclusive=[("a", "b")])
    outcome = inprocess.check(impl, {"name": "x", "a": "1", "b": "2"}, set())
    assert outcome.failed and "mutually exclusive" in outcome.msg


def test_fail_json_message_is_returned_with_no_log_values_masked():
    def run(module):
        module.warn("careful")
        module.fail_json(msg=f"cannot use {module.params['secret']}", token=module.params["secret"])

    no_log_values = set()
    outcome = inprocess.check(fake_impl(run), {"name": "x", "secret": "s3cr3t-value"}, no_log_values)
    assert outcome.failed
    assert "s3cr3t-value" not in outcome.msg and "cannot use" in outcome.msg
    assert "s3cr3t-value" in no_log_values
    assert outcome.warnings == ["careful"]


def test_a_run_that_returns_without_exit_json_is_a_failure(tmp_path):
    leftover = tmp_path / "scratch"
    leftover.write_text("x")

    def run(module):
        module.add_cleanup_file(str(leftover))

    outcome = inprocess.check(fake_impl(run), {"name": "x"}, set())
    assert outcome.failed and "without a result" in outcome.msg
    assert not leftover.exists()


def test_values_a_call_unmasks_for_its_own_result_stay_masked_for_the_caller():
    def run(module):
        module.no_log_values.add("kubeconfig-token")
        module.no_log_values.discard("kubeconfig-token")  # as return_in_clear does
        module.exit_json(changed=False)

    caller = {"earlier-secret"}
    inprocess.check(fake_impl(run), {"name": "x", "secret": "s3cr3t-value"}, caller)
    assert caller == {"earlier-secret", "kubeconfig-token", "s3cr3t-value"}
