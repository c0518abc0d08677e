"""plugin_utils.sync_records: the no-secret filter, the record's key and its file."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils.impl import (
    gcs_bucket,
    k8s_namespace,
    ksa_token,
    secret_manager_secret,
)
from ansible_collections.prow.build_cluster.plugins.plugin_utils import sync_records

TOKEN = "eyJhbGciOiJSUzI1NiJ9.a-token-that-must-never-be-stored"


def spec(impl):
    return impl.module_kwargs()["argument_spec"]


# ---------------------------------------------------------------- the no-secret filter
def test_a_payload_is_dropped_and_named():
    args, secrets = sync_records.scrub_call(spec(secret_manager_secret),
                                            {"project": "p", "name": "s", "payload": TOKEN, "keep_versions": 3})
    assert args == {"project": "p", "name": "s", "keep_versions": 3}
    assert secrets == ["payload"]


def test_the_google_credentials_are_never_stored_but_the_project_is():
    args, secrets = sync_records.scrub_call(spec(gcs_bucket), {
        "name": "b", "project": "p", "auth_kind": "accesstoken", "access_token": TOKEN,
        "service_account_file": "/keys/operator.json", "api_endpoints": {"storage": "http://127.0.0.1:1"}})
    assert args == {"name": "b", "project": "p"}
    # A credential given through gcp_auth is re-supplied at replay: it does not bar a record.
    assert secrets == []
    assert TOKEN not in json.dumps(args)


def test_an_api_key_and_an_inline_kubeconfig_are_secrets():
    args, secrets = sync_records.scrub_call(spec(k8s_namespace), {"name": "test-pods", "host": "https://h", "api_key": TOKEN})
    assert args == {"name": "test-pods", "host": "https://h"} and secrets == ["api_key"]
    inline = {"users": [{"name": "u", "user": {"token": TOKEN}}]}
    args, secrets = sync_records.scrub_call(spec(k8s_namespace), {"name": "test-pods", "kubeconfig": inline})
    assert "kubeconfig" not in args and secrets == ["kubeconfig"]


def test_a_nested_no_log_option_is_dropped():
    args, secrets = sync_records.scrub_call(spec(ksa_token), {
        "alias": "a", "service_account": "sa", "current": {"name": "inline", "content": TOKEN}})
    assert args == {"alias": "a", "service_account": "sa", "current": {"name": "inline"}}
    assert secrets == ["current.content"]


def test_a_call_without_secret_is_kept_whole():
    call = {"alias": "a", "service_account": "sa", "current": {"name": "secret s", "secret": "projects/p/secrets/s"},
            "return_content": True, "force": False}
    assert sync_records.scrub_call(spec(ksa_token), call) == (call, [])


def test_the_replay_gives_the_current_google_credentials_to_gcp_modules_only():
    stored = {"name": "b", "project": "p"}
    auth = {"auth_kind": "serviceaccount", "service_account_file": "/k.json", "project": "other", "access_token": None}
    assert sync_records.replay_args(spec(gcs_bucket), stored, auth) == {
        "name": "b", "project": "p", "auth_kind": "serviceaccount", "service_account_file": "/k.json"}
    no_gcp = {"dest": {"type": "path"}, "files": {"type": "dict"}}
    assert sync_records.replay_args(no_gcp, {"dest": "/d"}, auth) == {"dest": "/d"}


# ---------------------------------------------------------------- the key
def key(**change):
    parts = {"inputs": {"build_cluster": {"alias": "a", "token_duration": "48h"}, "force_rotation": False},
             "role_variables": {"credentials_force_rotation": False}, "code": "c0de", "ansible_version": "2.19.14"}
    parts.update(change)
    return sync_records.record_key(**parts)


def test_the_key_is_stable_and_ignores_the_order_of_keys():
    assert key() == key()
    assert key(inputs={"force_rotation": False, "build_cluster": {"token_duration": "48h", "alias": "a"}}) == key()


@pytest.mark.parametrize("change", [
    {"inputs": {"build_cluster": {"alias": "a", "token_duration": "24h"}, "force_rotation": False}},
    {"inputs": {"build_cluster": {"alias": "a", "token_duration": "48h"}, "force_rotation": True}},
    {"role_variables": {"credentials_force_rotation": False, "credentials_secret_keep_versions": 5}},
    {"code": "c0de2"},
    {"ansible_version": "2.19.15"},
], ids=["setting", "extra var", "role variable", "code", "ansible"])
def test_every_input_and_the_code_change_the_key(change):
    assert key(**change) != key()


def test_the_code_digest_follows_the_collection_but_not_what_a_run_writes(tmp_path):
    for name in ("plugins/modules", "roles/r/tasks", "playbooks/tasks", "playbooks/out/a"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "plugins/modules/m.py").write_text("x = 1\n")
    (tmp_path / "roles/r/tasks/main.yml").write_text("- debug:\n")
    (tmp_path / "playbooks/onboard.yml").write_text("- hosts: all\n")
    before = sync_records.code_digest.__wrapped__(tmp_path)
    (tmp_path / "playbooks/out/a/decoration-config.yaml").write_text("written by a run\n")
    (tmp_path / "playbooks/out/.sync").mkdir()
    (tmp_path / "playbooks/out/.sync/a.json").write_text("{}")
    assert sync_records.code_digest.__wrapped__(tmp_path) == before
    (tmp_path / "roles/r/tasks/main.yml").write_text("- debug: {msg: changed}\n")
    assert sync_records.code_digest.__wrapped__(tmp_path) != before


def test_role_variables_are_chosen_by_their_prefix():
    assert sync_records.role_variable_names(["credentials_token_duration", "prow", "cluster_delete", "ansible_check_mode",
                                             "gcs_access_prow", "prow_config_alias", "clusters"]) == [
        "cluster_delete", "credentials_token_duration", "gcs_access_prow", "prow_config_alias"]


# ---------------------------------------------------------------- journal and record files
def test_the_journal_is_0600_and_its_calls_are_kept_once(tmp_path):
    journal = tmp_path / "a.journal"
    call = {"module": "gke_admin_ksa", "args": {"name": "sa"}, "no_log": False, "secrets": [], "environment": []}
    sync_records.append_journal(journal, call)
    sync_records.append_journal(journal, call)
    sync_records.append_journal(journal, dict(call, args={"name": "other"}))
    assert oct(os.stat(journal).st_mode & 0o777) == "0o600"
    calls = sync_records.unique_calls(sync_records.read_journal(journal))
    assert [c["args"]["name"] for c in calls] == ["sa", "other"]


def test_a_record_is_used_only_for_its_key(tmp_path):
    path = tmp_path / "a.json"
    calls = [{"module": "k8s_namespace", "args": {"name": "test-pods"}, "no_log": False}]
    path.write_text(json.dumps(sync_records.record_document("k1", calls)))
    assert sync_records.load_record(path, "k1") == calls
    with pytest.raises(sync_records.RecordUnusable, match="inputs or the collection changed"):
        sync_records.load_record(path, "k2")


@pytest.mark.parametrize("text, message", [
    (None, "no sync record yet"),
    ('{"format": 1, "key": "k1", "calls": [', "corrupt"),
    ('{"format": 1, "key": "k1", "calls": []}', "corrupt"),
    ('{"format": 1, "key": "k1", "calls": [{"module": 1}]}', "corrupt"),
    ('["a list"]', "corrupt"),
    ('{"format": 0, "key": "k1", "calls": [{"module": "m", "args": {}}]}', "format 0"),
], ids=["missing", "torn", "no calls", "bad call", "not an object", "old format"])
def test_a_missing_corrupt_or_old_record_is_not_used(tmp_path, text, message):
    path = tmp_path / "a.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(sync_records.RecordUnusable, match=message):
        sync_records.load_record(path, "k1")
