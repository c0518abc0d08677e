"""The pre-flight's checks of the variables (plugins/filter/input_errors.py): the modules' own checks,
each naming the variable."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.prow.build_cluster.plugins.filter.input_errors import input_errors
from ansible_collections.prow.build_cluster.plugins.module_utils import _validate

LIFETIMES = {"duration": "48h", "rotate_before": "24h", "gke": True}

GOOD = [
    ("project_id", "prow-sandbox-build"),
    ("gke_name", "prow-build"),
    ("location", "us-central1-b"),
    ("dns_label", "test-pods"),
    ("dns_subdomain", "prow-build-clusters"),
    ("account_id", "prowjob-default-sa"),
    ("bucket", "gs://prow-results"),
    ("members", ["serviceAccount:eso@p-roject.iam.gserviceaccount.com"]),
    ("rbac_name", "system:aggregate-to-edit"),
    ("secret_resource", "projects/prow-project/secrets/prow_build_cluster_kubeconfig_a"),
    ("token_lifetimes", LIFETIMES),
    ("revoke_after", "15m"),
    ("revoke_after", "0"),
    ("at_least", {"value": 1, "module": "gke_cluster", "minimum": "MIN_NODE_COUNT"}),
    ("module_option", {"module": "gke_cluster", "option": "release_channel", "value": "STABLE"}),
    ("wif_id", "prow-build-clusters"),
    ("secret_key", "service-account.json"),
    ("pod_path", "/var/run/secrets/tokens/gcs/token"),
    ("component_service_accounts", {"sinker": "prow-sinker@prow-project.iam.gserviceaccount.com"}),
    ("component_service_accounts", {}),
    ("token_lifetimes", {"duration": "24h", "rotate_before": "12h", "platform": "eks"}),
    ("token_lifetimes", {"duration": "72h", "rotate_before": "24h", "platform": "other"}),
    ("audiences", []),
    ("audiences", ["https://kubernetes.default.svc"]),
]

BAD = [
    ("project_id", "my project", "is not a project ID"),
    ("gke_name", "Prow_Build", "cluster name"),
    ("location", "US-WEST1", "is not a zone"),
    ("dns_label", "Test_Pods", "is not a valid name"),
    ("dns_subdomain", "bad/name", "is not a valid name"),
    ("account_id", "sa", "is not a service account ID"),
    ("bucket", "my-google-results", "nor contain 'google'"),
    ("bucket", "goog-results", "may not start with 'goog'"),
    ("members", ["eso@p-roject.iam.gserviceaccount.com"], "has no TYPE: prefix"),
    ("members", "serviceAccount:x@y.com", "must be a list"),
    ("rbac_name", "a/b", "is not a valid RBAC name"),
    ("secret_resource", "projects/prow-project/secrets/my secret", "secret ID"),
    ("secret_resource", "projects/prow-project/secrets/a/b", "is not projects/PROJECT/secrets/SECRET"),
    ("token_lifetimes", dict(LIFETIMES, duration="5m", rotate_before="1m"), "shorter than 10m"),
    ("token_lifetimes", dict(LIFETIMES, duration="72h"), "exceeds 48h"),
    ("token_lifetimes", dict(LIFETIMES, rotate_before="48h"), "rotate_before (48h) must be shorter"),
    ("token_lifetimes", dict(LIFETIMES, duration="forever"), "token_duration: invalid duration"),
    ("revoke_after", "soon", "revoke_after: invalid duration 'soon'"),
    ("at_least", {"value": 0, "module": "gke_cluster", "minimum": "MIN_NODE_COUNT"}, "0 is less than 1, the minimum"),
    ("module_option", {"module": "gke_cluster", "option": "release_channel", "value": "FAST"}, "must be one of"),
    ("wif_id", "fed", "4 to 32"),
    ("wif_id", "gcp-pool", "reserved by Google"),
    ("wif_id", "Build_Team", "[a-z0-9-]"),
    ("secret_key", "a/b", "is not a valid Secret key"),
    ("secret_key", "..", "is not a valid Secret key"),
    ("pod_path", "token", "an absolute file path"),
    ("pod_path", "/var/../etc/token", "an absolute file path"),
    ("component_service_accounts", {"plank": "prow-plank@prow-project.iam.gserviceaccount.com"},
     "unknown component 'plank'"),
    ("component_service_accounts", {"deck": "deck@example.com"}, "is not a Google service account email"),
    ("component_service_accounts", ["deck"], "expected a mapping"),
    ("audiences", "https://kubernetes.default.svc", "must be a list of audiences"),
    ("audiences", ["a b"], "is not an audience"),
    ("audiences", [""], "is not an audience"),
]


@pytest.mark.parametrize(("kind", "value"), GOOD, ids=[case[0] for case in GOOD])
def test_values_the_modules_accept_pass(kind, value):
    assert input_errors([{"variable": "v", "kind": kind, "value": value}]) == []


@pytest.mark.parametrize(("kind", "value", "message"), BAD, ids=[f"{case[0]}-{case[2]}" for case in BAD])
def test_values_the_modules_refuse_are_named_with_their_variable(kind, value, message):
    errors = input_errors([{"variable": "build_clusters[a].x", "kind": kind, "value": value}])
    assert len(errors) == 1 and errors[0].startswith("build_clusters[a].x: ") and message in errors[0], errors


def test_a_72h_token_is_fine_off_gke():
    assert input_errors([{"variable": "v", "kind": "token_lifetimes", "value": dict(LIFETIMES, duration="72h", gke=False)}]) == []


def test_every_bad_value_is_reported_not_only_the_first():
    checks = [{"variable": "a", "kind": "dns_label", "value": "A"}, {"variable": "b", "kind": "bucket", "value": "g00gle"}]
    assert [e.split(":")[0] for e in input_errors(checks)] == ["a", "b"]


@pytest.mark.parametrize("bad", ["x", [{"variable": "v", "kind": "nope", "value": 1}], [{"kind": "bucket"}]])
def test_a_malformed_check_is_an_error(bad):
    with pytest.raises(AnsibleFilterError, match="input_errors"):
        input_errors(bad)


def test_output_dir_a_file_a_file_parent_and_a_new_directory(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("")
    assert "is a file" in _validate.output_dir_error(str(a_file))
    assert "cannot be created" in _validate.output_dir_error(str(a_file / "out"))
    assert _validate.output_dir_error(str(tmp_path / "new" / "out")) is None
    assert _validate.output_dir_error(str(tmp_path)) is None


@pytest.mark.parametrize(("platform", "duration", "cap", "label"), [
    ("gke", "72h", "48h", "GKE"), ("eks", "48h", "24h", "EKS"), ("aks", "25h", "24h", "AKS")])
def test_a_token_over_the_platforms_cap_is_refused_naming_both_variables(platform, duration, cap, label):
    value = {"duration": duration, "rotate_before": "1h", "platform": platform}
    [error] = input_errors([{"variable": "build_clusters[a]", "kind": "token_lifetimes", "value": value}])
    assert error == (f"build_clusters[a]: token_duration {duration} exceeds {cap}, the longest token {label} grants"
                     f" (platform {platform}); use {cap} or less and rotate on a schedule (or set platform: other if this"
                     f" is not a {label} cluster)")


@pytest.mark.parametrize(("platform", "duration"), [("gke", "48h"), ("eks", "24h"), ("aks", "24h"), ("other", "720h")])
def test_a_token_at_the_platforms_cap_passes(platform, duration):
    value = {"duration": duration, "rotate_before": "1h", "platform": platform}
    assert input_errors([{"variable": "v", "kind": "token_lifetimes", "value": value}]) == []
