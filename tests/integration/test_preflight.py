"""Issue 16: every bad input stops onboarding in the pre-flight, before any write; check mode on an empty project.

One fresh sandbox for the module (test_playbooks.py's fixture: a Prow kube-apiserver with the ESO CRDs and the GCP
fake), driven as a user does: ``ansible-playbook playbooks/onboard.yml -e @vars.yml``, with vars.yml the sandbox's
example with one thing wrong. Each run must fail with one message naming the variable, in a pre-flight check, with no
write in the fake's request log nor in any cluster's audit log. Every run stops before a write, so the project stays
empty for the check-mode test, which shows what a real run would create.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from test_playbooks import VARS, bad_vars, changed_tasks, fixture_sandbox, gcp_writes, kube_writes, playbook, recap, set_in  # noqa: F401  pylint: disable=unused-import

AT = "build_clusters[build-sandbox]"
HERE = str(Path(__file__))
UNREACHABLE = str(Path(__file__).parent / "data" / "unreachable.kubeconfig")


def flat(output):
    """The output with the result callback's line wrapping and YAML quoting undone, for substring checks."""
    return " ".join(output.split()).replace("''", "'")


def cluster(**changes):
    """The build cluster's settings with ``changes`` (KeyError as a value removes the key)."""
    def mutate(doc):
        settings = doc["build_clusters"][0]
        for key, value in changes.items():
            if value is KeyError:
                del settings[key]
            else:
                settings[key] = value
    return mutate


def gke(**changes):
    def mutate(doc):
        doc["build_clusters"][0]["gke"].update(changes)
    return mutate


def prow(**changes):
    def mutate(doc):
        doc["prow"].update(changes)
    return mutate


def kubeconfig_cluster(**settings):
    """The build cluster replaced by an existing one, reached by kubeconfig (the sandbox's build cluster)."""
    return set_in(["build_clusters", 0], {"alias": "kind", "project": "prow-sandbox-build",
                                          "kubeconfig": "{{ lookup('ansible.builtin.env', 'BUILD_KUBECONFIG') }}", **settings})


# (case, mutation, texts the failure's output must hold: the variable, and why)
CASES = [
    # The inventory and the argument spec of the variables (playbooks/vars/spec.yml).
    ("no build_clusters", set_in(["build_clusters"], KeyError), ["no build clusters: give build_clusters"]),
    ("build_clusters not a list", set_in(["build_clusters"], {"alias": "a"}), ["build_clusters must be a list"]),
    ("two clusters with one alias", lambda doc: doc["build_clusters"].append(dict(doc["build_clusters"][0])),
     ["each with its own alias"]),
    ("clusters of one project disagreeing on job_identity", lambda doc: doc["build_clusters"].append(
        {**doc["build_clusters"][0], "alias": "build-sandbox-2", "job_identity": "direct",
         "gke": {**doc["build_clusters"][0]["gke"], "name": "prow-build-2"}}),
     ["share the job identity test-pods/prowjob-default-sa", "(build-sandbox-2: direct; build-sandbox: gsa)"]),
    ("malformed alias", set_in(["build_clusters", 0, "alias"], "Build_Team"), ["Build_Team", "must be a lowercase DNS label"]),
    ("alias over 63 characters", set_in(["build_clusters", 0, "alias"], "b" * 64), ["b" * 64, "at most 63 characters"]),
    ("no prow", set_in(["prow"], KeyError), ["missing required arguments: prow"]),
    ("no prow.bucket", set_in(["prow", "bucket"], KeyError), ["missing required arguments: bucket found in prow"]),
    ("no project", cluster(project=KeyError), ["missing required arguments: project found in build_cluster"]),
    ("a misspelt variable", cluster(tokn_duration="24h"), ["build_cluster.tokn_duration. Supported parameters include"]),
    ("unknown state", cluster(state="gone"), ["value of state must be one of: present, absent, got: gone found in build_cluster"]),
    ("unknown delivery", prow(delivery="eso"), ["value of delivery must be one of: external_secrets, kes, direct, none, got: eso found in prow"]),
    ("retired KES delivery", prow(delivery="kes"), ["prow.delivery kes is retired"]),
    ("node_count not a number", gke(node_count="three"), ["argument 'node_count' is of type str found in 'build_cluster -> gke'", "unable to convert to int"]),
    ("gke without a name", lambda doc: doc["build_clusters"][0]["gke"].pop("name"), ["missing required arguments: name found in build_cluster -> gke"]),
    ("neither gke nor kubeconfig", cluster(gke=KeyError), ["give exactly one of gke"]),
    # The values the cluster role's modules would refuse.
    ("project ID with spaces", cluster(project="prow sandbox build"), [f"{AT}.project", "is not a project ID"]),
    ("project ID in capitals", cluster(project="Prow-Sandbox-Build"), [f"{AT}.project", "is not a project ID"]),
    ("project ID too short", cluster(project="prow"), [f"{AT}.project", "is not a project ID"]),
    ("GKE name in capitals", gke(name="Prow_Build"), [f"{AT}.gke.name", "cluster name 'Prow_Build' is not valid"]),
    ("GKE name over 40 characters", gke(name="p" * 41), [f"{AT}.gke.name", "1 to 40"]),
    ("GKE location not a zone", gke(location="US-CENTRAL1"), [f"{AT}.gke.location", "is not a zone"]),
    ("no nodes", gke(node_count=0), [f"{AT}.gke.node_count", "0 is less than 1, the minimum"]),
    ("a 5 GB disk", gke(disk_size_gb=5), [f"{AT}.gke.disk_size_gb", "5 is less than 10, the minimum"]),
    ("unknown release channel", gke(release_channel="FAST"), [f"{AT}.gke.release_channel: value of release_channel must be one of: RAPID, REGULAR, STABLE, EXTENDED, got: FAST"]),
    ("pod namespace in capitals", cluster(pod_namespace="Test_Pods"), [f"{AT}.pod_namespace", "is not a valid name"]),
    ("pod namespace over 63 characters", cluster(pod_namespace="t" * 64), [f"{AT}.pod_namespace", "at most 63"]),
    # gcs_access.
    ("bucket containing google", prow(bucket="prow-google-results"), ["prow.bucket", "nor contain 'google'"]),
    ("bucket starting with goog", prow(bucket="goog-prow-results"), ["prow.bucket", "may not start with 'goog'"]),
    ("bucket in capitals", prow(bucket="Prow_Results"), ["prow.bucket", "is not valid"]),
    ("bucket of 2 characters", prow(bucket="pr"), ["prow.bucket", "3 to 63 characters"]),
    ("bucket over 63 characters", prow(bucket="p" * 64), ["prow.bucket", "at most 63 characters"]),
    ("bucket like an IP address", prow(bucket="192.168.0.1"), ["prow.bucket", "IP address"]),
    ("bucket project with spaces", prow(bucket_project="prow sandbox prow"), ["prow.bucket_project", "is not a project ID"]),
    ("bucket project without permission", prow(bucket_project="prow-sandbox-other"),
     ["prow-sandbox-other", "may not create buckets there (storage.buckets.create)"]),
    ("shared bucket that does not exist", prow(bucket="no-such-bucket-4242", create_bucket=False),
     ["shared bucket no-such-bucket-4242 does not exist"]),
    ("job service account in capitals", cluster(job_service_account="Prow_Job"),
     [f"{AT}.job_service_account", "is not a service account ID"]),
    ("job service account too short", cluster(job_service_account="sa"), [f"{AT}.job_service_account", "6 to 30"]),
    ("control-plane SA not an email", prow(control_plane_service_accounts=["prow-crier"]),
     ["prow.control_plane_service_accounts", "is not an email address"]),
    # credentials.
    ("token_duration 5m", cluster(token_duration="5m"), [AT, "token_duration 5m is shorter than 10m"]),
    ("token_duration 72h on GKE", cluster(token_duration="72h"), [AT, "duration 72h exceeds 48h"]),
    ("token_duration not a duration", cluster(token_duration="two days"), [AT, "token_duration: invalid duration"]),
    ("rotate_before as long as the token", cluster(rotate_before="48h"), [AT, "rotate_before (48h) must be shorter"]),
    ("rotate_before not a duration", cluster(rotate_before="soon"), [AT, "rotate_before: invalid duration"]),
    ("revoke_after not a duration", cluster(revoke_after="later"), [f"{AT}.revoke_after", "revoke_after: invalid duration 'later'"]),
    ("cluster_role with a slash", cluster(cluster_role="edit/all"), [f"{AT}.cluster_role", "is not a valid RBAC name"]),
    ("cluster_role that does not exist", kubeconfig_cluster(cluster_role="no-such-role"),
     ["cluster_role: ClusterRole no-such-role does not exist"]),
    ("secret name with a space", cluster(secret_name="my kubeconfig"), [f"{AT}.secret_project, secret_name", "secret ID"]),
    ("secret name with a slash", cluster(secret_name="team/kubeconfig"),
     [f"{AT}.secret_project, secret_name", "is not projects/PROJECT/secrets/SECRET"]),
    ("secret project in capitals", cluster(secret_project="Prow-Secrets"), [f"{AT}.secret_project, secret_name", "is not a project ID"]),
    ("Prow project with spaces", prow(project="prow sandbox prow"), ["or prow.project", "is not a project ID"]),
    ("secret accessor without serviceAccount:", prow(secret_accessors=["external-secrets@prow-sandbox-prow.iam.gserviceaccount.com"]),
     ["prow.secret_accessors", "has no TYPE: prefix"]),
    ("secret accessor not an email", prow(secret_accessors=["serviceAccount:external-secrets"]),
     ["prow.secret_accessors", "is not an email address"]),
    ("output_dir that is a file", prow(output_dir=HERE), ["prow.output_dir", "is a file, not a directory"]),
    ("output_dir under a file", prow(output_dir=HERE + "/out"), ["prow.output_dir", "cannot be created"]),
    ("Prow namespace in capitals", prow(namespace="Default"), ["prow.namespace", "is not a valid name"]),
    ("build clusters' Secret name in capitals", prow(build_clusters_secret="Prow_Build_Clusters"),
     ["prow.build_clusters_secret", "is not a valid name"]),
    # What only the clusters can answer, read before any write.
    ("unreachable cluster", set_in(["build_clusters", 0], {"alias": "far", "project": "prow-sandbox-build", "kubeconfig": UNREACHABLE}),
     ["cannot reach https://127.0.0.1:1"]),
    ("unreachable Prow cluster", prow(kubeconfig=UNREACHABLE), ["cannot reach https://127.0.0.1:1"]),
]


# What a real run on an empty project creates, by task (the roles' tasks/present.yml and the instance's).
CREATES = [
    "prow.build_cluster.cluster : Create the GKE cluster with Workload Identity (or bring it onto it)",
    "prow.build_cluster.cluster : Ensure the job namespace",
    "prow.build_cluster.gcs_access : Ensure the results bucket exists",
    "prow.build_cluster.gcs_access : Ensure the job GSA",
    "prow.build_cluster.gcs_access : Bind the job KSA to the job GSA through Workload Identity",
    "prow.build_cluster.gcs_access : Grant write access on the bucket to the job GSA and Prow's control plane",
    "prow.build_cluster.credentials : Ensure Prow's ServiceAccount and its ClusterRoleBinding in build-sandbox",
    "prow.build_cluster.credentials : Mint a token if the stored one is due for build-sandbox",
    "prow.build_cluster.credentials : Let the secret syncer read the secrets",
    "prow.build_cluster.prow_config : Write the Prow configuration files for build-sandbox",
    "prow.build_cluster.credentials : Store the new kubeconfig in Secret Manager for build-sandbox",
    "prow.build_cluster.credentials : Merge the composite kubeconfig",
    "prow.build_cluster.prow_config : Write the Prow instance's configuration files",
    "prow.build_cluster.credentials : Apply the ExternalSecret of the build clusters",
]


# First in the module: the project is empty (every bad-input run below stops before a write).
def test_check_mode_on_an_empty_project_succeeds_and_lists_what_a_real_run_creates(sandbox):
    state, env = sandbox
    since = datetime.now(timezone.utc)
    check = playbook(env, "onboard.yml", "-e", f"@{VARS}", "--check", "--diff")
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    changed = [task for task, _host in changed_tasks(check)]
    missing = [task for task in CREATES if task not in changed]
    assert missing == [], check.stdout[-6000:]
    # The diffs show what would be created.
    output = flat(check.stdout)
    for text in ("workload_pool: prow-sandbox-build.svc.id.goog", "uniform_bucket_level_access: true",
                 "displayName: ProwJob default SA", "prow-build-cluster: build-sandbox", "decoration-config.yaml: sha256:",
                 "prow-controller-manager-patch.yaml: sha256:"):
        assert text in output, text
    assert gcp_writes(state, since) == []
    assert kube_writes(state, since) == []
    assert not (state / "out").exists()  # no Prow file either


@pytest.mark.parametrize(("case", "mutate", "texts"), CASES, ids=[case for case, _, _ in CASES])
def test_bad_input_fails_first_with_one_message_and_changes_nothing(sandbox, tmp_path, case, mutate, texts):
    state, env = sandbox
    since = datetime.now(timezone.utc)
    run = playbook(env, "onboard.yml", "-e", f"@{bad_vars(tmp_path, mutate)}")
    assert run.returncode != 0, case
    output = flat(run.stdout)
    for text in texts:
        assert text in output, run.stdout[-3000:]
    assert recap(run)["changed"] == 0 and recap(run)["failed"] == 1, run.stdout[-3000:]
    failed_task = [line for line in run.stdout.splitlines() if line.startswith("TASK [")][-1]
    assert "Check" in failed_task, failed_task  # a pre-flight check, before any other task
    assert gcp_writes(state, since) == []
    assert kube_writes(state, since) == []


def test_the_table_holds_at_least_the_45_kinds_of_the_issue():
    assert len({case for case, _, _ in CASES}) == len(CASES) >= 45
