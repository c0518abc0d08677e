"""Issue #14: keyless clusters (``credential_model: gke_exec``) in out/composite.kubeconfig, the file a user's
kubectl and Prow-local tooling read, besides the ConfigMap delivered to Prow.

A sandbox of its own (test_playbooks.py's fixture; the GCP fake's GKE API starts the keyless build cluster). The
sandbox's token cluster and a keyless one are onboarded together: the composite holds both, the keyless context with
the very exec kubeconfig of the ConfigMap (no token, no key); a re-run changes and writes nothing; switched back to
the token model, the keyless context is replaced by one with a token.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml

from prow_sandbox.gcp.testing import kube_sandbox_available
from test_gke_exec import CONFIGMAP, exec_kubeconfig, keyless_vars  # noqa: F401  pylint: disable=unused-import
from test_playbooks import VARS, fixture_sandbox, gcp_writes, kube_writes, playbook, recap  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(kube_sandbox_available()), reason=str(kube_sandbox_available()))]

ALIAS = "build-keyless"
TOKEN_ALIAS = "build-sandbox"


def both_vars(tmp_path, **keyless):
    """The sandbox's example (its token cluster) and the keyless GKE cluster of test_gke_exec.py."""
    token_cluster = yaml.safe_load(VARS.read_text())["build_clusters"][0]
    path = keyless_vars(tmp_path, **keyless)
    doc = yaml.safe_load(path.read_text())
    doc["build_clusters"].append(token_cluster)
    path.write_text(yaml.safe_dump(doc))
    return path


def composite(state):
    return yaml.safe_load((state / "out" / "composite.kubeconfig").read_text())


def user_of(config, alias):
    context = next(c["context"] for c in config["contexts"] if c["name"] == alias)
    return next(u["user"] for u in config["users"] if u["name"] == context["user"])


def server_of(config, alias):
    context = next(c["context"] for c in config["contexts"] if c["name"] == alias)
    return next(c["cluster"]["server"] for c in config["clusters"] if c["name"] == context["cluster"])


@pytest.fixture(scope="module", name="onboarded")
def fixture_onboarded(sandbox, tmp_path_factory):
    state, env = sandbox
    vars_file = both_vars(tmp_path_factory.mktemp("vars"))
    first = playbook(env, "onboard.yml", "-e", f"@{vars_file}")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    return state, env, vars_file


def test_the_composite_holds_the_keyless_cluster_as_the_configmap_has_it_and_the_token_cluster(onboarded):
    state, env, _vars = onboarded
    config = composite(state)
    assert sorted(c["name"] for c in config["contexts"]) == [ALIAS, TOKEN_ALIAS]
    keyless = user_of(config, ALIAS)
    assert set(keyless) == {"exec"} and keyless["exec"]["command"] == "gke-gcloud-auth-plugin", keyless
    delivered = exec_kubeconfig(env)  # the ConfigMap's key for the alias
    assert keyless == delivered["users"][0]["user"]
    assert server_of(config, ALIAS) == delivered["clusters"][0]["cluster"]["server"]
    assert "token" in user_of(config, TOKEN_ALIAS)


def test_a_rerun_changes_nothing_and_writes_nothing(onboarded):
    state, env, vars_file = onboarded
    before = (state / "out" / "composite.kubeconfig").read_text()
    since = datetime.now(timezone.utc)
    again = playbook(env, "onboard.yml", "-e", f"@{vars_file}")
    assert again.returncode == 0 and recap(again)["changed"] == 0, again.stdout[-4000:]
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []
    assert (state / "out" / "composite.kubeconfig").read_text() == before


def test_a_cluster_switched_back_to_token_is_replaced_in_the_composite(onboarded, tmp_path):
    state, env, _vars = onboarded
    switched = playbook(env, "onboard.yml", "-e", f"@{both_vars(tmp_path, credential_model='token')}")
    assert switched.returncode == 0, switched.stdout[-4000:] + switched.stderr[-2000:]
    config = composite(state)
    assert sorted(c["name"] for c in config["contexts"]) == [ALIAS, TOKEN_ALIAS]
    user = user_of(config, ALIAS)
    assert "exec" not in user and user.get("token"), sorted(user)
