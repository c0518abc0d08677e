#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ksa_token
short_description: Mint a ServiceAccount token and the kubeconfig Prow uses for a build cluster
version_added: 0.1.0
description:
  - Mints a token for a Kubernetes ServiceAccount with the TokenRequest API, as gencred did, and builds a
    kubeconfig whose cluster, user and context are all named O(alias), with the cluster's server URL and CA data.
  - The expiry is the one the API server actually granted (C(status.expirationTimestamp)), which may be shorter
    than O(duration).
  - Idempotent. Given the current kubeconfig (O(current), or O(dest) when O(current) is not set), a new token is
    minted only when the current one cannot be kept, that is when the kubeconfig has no context O(alias) or no
    token, points at another server or CA, the token expires within O(rotate_before), or the API server's
    TokenReview rejects it or says it belongs to another identity. O(force=true) always mints.
  - The kubeconfig is written to O(dest) atomically with mode C(0600), and returned only with O(return_content=true).
  - Tokens minted by TokenRequest cannot be revoked one by one; an old token stays valid until it expires
    (or until its ServiceAccount is deleted).
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  service_account:
    description: Name of the ServiceAccount; gencred's default.
    type: str
    default: serviceaccount-cluster-admin
  namespace:
    description: Namespace of the ServiceAccount; gencred's default.
    type: str
    default: default
  alias:
    description:
      - Name of the kubeconfig's cluster, user and context. Prow addresses the build cluster by this name in a
        job's C(cluster:) field, for example C(default) or C(build-myteam).
    type: str
    required: true
  duration:
    description:
      - Requested token lifetime, Go-style (C(48h), C(90m)) or seconds. At least C(10m), the API's minimum.
      - GKE does not grant more than C(48h); on GKE (see O(platform)) a longer duration is refused before any call.
    type: str
    default: 48h
  rotate_before:
    description:
      - Mint a new token when the current one expires within this duration. It must be shorter than O(duration),
        otherwise every run would rotate.
      - With the default and a 48h token, a job that runs every 6 hours (as gencred's did) rotates about once a day
        and always leaves Prow a token with at least 18 hours to go.
    type: str
    default: 24h
  force:
    description: Mint a new token even if the current one could be kept.
    type: bool
    default: false
  platform:
    description:
      - Whether the cluster is GKE, whose 48h token cap O(duration) must respect.
      - C(auto) treats the cluster as GKE when connected with O(gke), or when the server's version contains C(-gke.).
      - C(gke) always applies the cap, for example for a GKE cluster reached through a proxy; C(other) never does.
    type: str
    choices: [auto, gke, other]
    default: auto
  current:
    description:
      - Where the kubeconfig in use now is, to decide whether its token can be kept. Exactly one of
        O(current.path), O(current.content) or O(current.secret).
      - Defaults to O(dest). A missing file or secret means there is no current token.
    type: dict
    suboptions:
      name:
        description: A label for messages.
        type: str
      path:
        description: Path of a kubeconfig file.
        type: path
      content:
        description: Kubeconfig content, YAML text or a mapping. Never logged.
        type: raw
      secret:
        description:
          - A Google Secret Manager secret holding the kubeconfig, C(projects/PROJECT/secrets/SECRET), optionally
            with C(/versions/VERSION) (default C(latest)). Read with the Google credentials options.
        type: str
  dest:
    description: Write the kubeconfig to this file, atomically and with mode C(0600), when its content changes.
    type: path
  return_content:
    description:
      - Return the kubeconfig in RV(kubeconfig), for example to store it in Secret Manager in a later task.
      - The task must set C(no_log=true), which hides the whole result from output and logs but not from
        C(register); Ansible cannot hide one return value alone, so the module refuses to run otherwise.
      - At least one of O(dest) and O(return_content=true) is required, or a minted token would be lost.
    type: bool
    default: false
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.K8S
  - prow.build_cluster.k8s_auth
  - prow.build_cluster.gcp_auth
notes:
  - In check mode nothing is minted; RV(rotated) says whether a real run would mint a token.
  - Diffs show the server, a CA fingerprint, the token's fingerprint and its expiry, never a token.
  - The Google credentials options are used only with O(gke) and O(current.secret).
  - The caller needs C(create) on C(serviceaccounts/token) in O(namespace), and C(create) on C(tokenreviews).
"""

EXAMPLES = r"""
- name: Mint (or keep) the token Prow uses for build-myteam
  prow.build_cluster.ksa_token:
    gke: projects/my-build-proj/locations/us-west1-b/clusters/my-build-proj
    alias: build-myteam
    current:
      secret: projects/my-prow-project/secrets/prow_build_cluster_kubeconfig_build-myteam
    return_content: true
  no_log: true  # required with return_content: the result holds the token
  register: token

- name: Store a new kubeconfig in Secret Manager only when it rotated
  prow.build_cluster.secret_manager_secret:
    name: prow_build_cluster_kubeconfig_build-myteam
    project: my-prow-project
    payload: "{{ token.kubeconfig }}"
  when: token.rotated

- name: Keep a kubeconfig file on the controller instead
  prow.build_cluster.ksa_token:
    kubeconfig: ~/.kube/config
    context: my-build-cluster
    alias: default
    dest: "{{ playbook_dir }}/out/default.kubeconfig"
"""

RETURN = r"""
rotated:
  description: Whether a new token was minted (in check mode, whether one would be).
  returned: always
  type: bool
reason:
  description: Why the token was (or would be) rotated; null when the current one was kept.
  returned: always
  type: str
  sample: the token expires at 2026-11-24T09:00:00+00:00, within rotate_before
expiration_timestamp:
  description:
    - Expiry of the token in the kubeconfig (ISO 8601). For a new token, the one the server granted.
    - Null in check mode when a token would be minted.
  returned: always
  type: str
  sample: '2026-11-25T12:00:00+00:00'
expires_in_seconds:
  description: Seconds until RV(expiration_timestamp).
  returned: always
  type: int
fingerprint:
  description: Fingerprint of the token in the kubeconfig (null in check mode when one would be minted).
  returned: always
  type: str
  sample: sha256:5f2b8c0d9e1a3b4c
service_account:
  description: The identity the token authenticates as.
  returned: always
  type: str
  sample: system:serviceaccount:default:serviceaccount-cluster-admin
server:
  description: API server URL written in the kubeconfig.
  returned: always
  type: str
alias:
  description: Name of the kubeconfig's cluster, user and context.
  returned: always
  type: str
dest:
  description: Path of the kubeconfig file, when O(dest) is set.
  returned: when O(dest) is set
  type: str
kubeconfig:
  description: The kubeconfig (YAML text), with its token. Only in a task with C(no_log=true).
  returned: when O(return_content=true), except in check mode when a token would be minted
  type: str
"""

import base64
import copy
import os
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc
from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig_source as sources
from ansible_collections.prow.build_cluster.plugins.module_utils.common import (
    ApiError,
    dns_label_error,
    dns_subdomain_error,
    fail_on_api_error,
    fingerprint,
    format_duration,
    parse_duration,
)
from ansible_collections.prow.build_cluster.plugins.module_utils.gcp import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE
from ansible_collections.prow.build_cluster.plugins.module_utils.k8s import (
    K8S_AUTH_ARGSPEC,
    K8S_AUTH_MUTUALLY_EXCLUSIVE,
    connect,
)

GKE_MAX_SECONDS = 48 * 3600
MIN_SECONDS = 600  # TokenRequest rejects expirationSeconds below 10 minutes
# Servers may shorten a lifetime a little (clock rounding); warn only about real cuts.
SHORTENED_SLACK = 60


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARGSPEC)
    spec.update(copy.deepcopy(GCP_AUTH_ARGSPEC))
    spec.update(
        service_account={"type": "str", "default": "serviceaccount-cluster-admin"},
        namespace={"type": "str", "default": "default"},
        alias={"type": "str", "required": True},
        duration={"type": "str", "default": "48h"},
        rotate_before={"type": "str", "default": "24h"},
        force={"type": "bool", "default": False},
        platform={"type": "str", "default": "auto", "choices": ["auto", "gke", "other"]},
        current={"type": "dict", "options": copy.deepcopy(sources.SOURCE_OPTIONS)},
        dest={"type": "path"},
        return_content={"type": "bool", "default": False},
    )
    return spec


def alias_error(alias):
    # Prow uses the alias as a context name and as a file or Secret key name (--kubeconfig-dir).
    if not alias or len(alias) > 253 or not all(c.isalnum() or c in "-._" for c in alias) or alias.startswith("."):
        return f"alias {alias!r} is not usable: use letters, digits, '-', '_' and '.', not starting with '.' (for example build-myteam)"
    return None


def validate(module):
    """Every check that needs no API call; returns (duration, rotate_before) in seconds."""
    params = module.params
    for error in (
        dns_subdomain_error(params["service_account"], "service_account"),
        dns_label_error(params["namespace"], "namespace"),
        alias_error(params["alias"]),
    ):
        if error:
            module.fail_json(msg=error)
    durations = {}
    for key in ("duration", "rotate_before"):
        try:
            durations[key] = parse_duration(params[key])
        except ValueError as exc:
            module.fail_json(msg=f"{key}: {exc}")
    duration, rotate_before = durations["duration"], durations["rotate_before"]
    if duration < MIN_SECONDS:
        module.fail_json(msg=f"duration {params['duration']} is shorter than 10m, the TokenRequest API's minimum")
    if rotate_before >= duration:
        module.fail_json(
            msg=f"rotate_before ({params['rotate_before']}) must be shorter than duration ({params['duration']}), "
            "otherwise every new token would be rotated at once"
        )
    if duration > GKE_MAX_SECONDS and (params["platform"] == "gke" or (params["platform"] == "auto" and params.get("gke"))):
        module.fail_json(msg=gke_cap_message(params["duration"]))
    if not params["dest"] and not params["return_content"]:
        module.fail_json(msg="set dest, or return_content: true, otherwise a minted token would be lost")
    if params["return_content"] and not module.no_log:
        module.fail_json(msg=sources.RETURN_CONTENT_NEEDS_NO_LOG)
    if params["dest"] and not os.path.isdir(os.path.dirname(os.path.abspath(params["dest"]))):
        module.fail_json(msg=f"dest: directory of {params['dest']} does not exist")
    if params["current"] is not None:
        error = sources.validate(params["current"], "current")
        if error:
            module.fail_json(msg=error)
    return duration, rotate_before


def gke_cap_message(duration):
    return (
        f"duration {duration} exceeds 48h, the longest token GKE grants; use 48h or less "
        "and rotate on a schedule (or set platform: other if this is not a GKE cluster)"
    )


def read_current(module):
    """The current kubeconfig (parsed), or None; its label for messages."""
    item = module.params["current"]
    if item is None:
        if not module.params["dest"]:
            return None, None
        item = {"path": module.params["dest"]}
    label = sources.label_of(item, "current")
    try:
        content = sources.SourceReader(module).read(item, label)
        if content is None:
            return None, label
        config = kc.parse(content, label)
    except ApiError as exc:
        fail_on_api_error(module, exc)
    except kc.KubeconfigError as exc:
        if module.params["force"]:
            return None, label  # it is being replaced anyway
        module.fail_json(msg=f"{exc}; fix or remove it, or set force: true to mint a new token regardless")
    sources.hide_credentials(module, config)
    return config, label


def cluster_ca(module, client, namespace):
    """The CA data the kubeconfig needs: the connection's, else the cluster's kube-root-ca.crt (as gencred read it)."""
    if client.ca_data:
        return client.ca_data
    try:
        config_map = client.get(f"/api/v1/namespaces/{namespace}/configmaps/kube-root-ca.crt", resource="configmap kube-root-ca.crt")
    except ApiError as exc:
        fail_on_api_error(module, exc)
    pem = ((config_map or {}).get("data") or {}).get("ca.crt")
    if not pem:
        module.fail_json(msg="cannot tell the cluster's CA: the connection has none (set ca_cert) and ConfigMap kube-root-ca.crt has no ca.crt")
    return base64.b64encode(pem.encode("utf-8")).decode("ascii")


def mint(module, client, duration):
    """(token, expiry) from a TokenRequest, with the expiry the server granted."""
    params = module.params
    namespace, name = params["namespace"], params["service_account"]
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": duration}}
    try:
        response = client.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body,
            resource=f"serviceaccounts/token {namespace}/{name}",
        )
    except ApiError as exc:
        if exc.status == 404:
            module.fail_json(
                msg=f"ServiceAccount {namespace}/{name} does not exist: create it first (prow.build_cluster.gke_admin_ksa); {exc}",
                status=404,
            )
        fail_on_api_error(module, exc)
    status = response.get("status") or {}
    if not status.get("token") or not status.get("expirationTimestamp"):
        module.fail_json(msg=f"TokenRequest for {namespace}/{name} returned no token or no expirationTimestamp")
    module.no_log_values.add(status["token"])
    return status["token"], kc.parse_timestamp(status["expirationTimestamp"])


def describe(config, alias):
    """What a diff may show of the kubeconfig: no token, only fingerprints and expiry."""
    found = kc.credential(config, alias) if config else None
    if not found:
        return {}
    server, ca_data, token = found
    expiry = kc.token_expiry(token) if token else None
    return {
        "context": alias,
        "server": server,
        "ca": fingerprint(kc.normal_ca(ca_data) or b""),
        "token": fingerprint(token),
        "token_expiry": expiry.isoformat() if expiry else None,
    }


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=K8S_AUTH_MUTUALLY_EXCLUSIVE + GCP_AUTH_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    if not kc.HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    duration, rotate_before = validate(module)
    params = module.params
    alias, dest = params["alias"], params["dest"]
    expected_user = f"system:serviceaccount:{params['namespace']}:{params['service_account']}"

    current, _label = read_current(module)
    client = connect(module)
    try:
        if duration > GKE_MAX_SECONDS and params["platform"] == "auto" and client.is_gke():
            module.fail_json(msg=gke_cap_message(params["duration"]))
        server, ca_data = client.server, cluster_ca(module, client, params["namespace"])

        now = datetime.now(timezone.utc)
        reason = "force: true" if params["force"] else kc.stale_reason(current, alias, server, ca_data, now, rotate_before)
        if reason is None:
            # Cheap checks passed; only the server knows about revocation and foreign issuers.
            reason = kc.review_reason(client.token_review(kc.credential(current, alias)[2]), expected_user)
    except ApiError as exc:
        fail_on_api_error(module, exc)

    token = expiry = None
    if reason is None:
        token = kc.credential(current, alias)[2]
        expiry = kc.token_expiry(token)
    elif not module.check_mode:
        token, expiry = mint(module, client, duration)
        # Nothing is published (file, return value, then Secret Manager) before the server
        # has accepted the new token as the expected identity: Prow keeps the old one until then.
        try:
            refused = kc.review_reason(client.token_review(token), expected_user)
        except ApiError as exc:
            fail_on_api_error(module, exc)
        if refused:
            module.fail_json(msg=f"the new token failed its TokenReview ({refused}); nothing was published")
        granted = (expiry - now).total_seconds()
        if granted < duration - SHORTENED_SLACK:
            module.warn(f"the API server granted {format_duration(granted)}, less than the {params['duration']} requested")
        if granted <= rotate_before:
            module.warn(f"the token's lifetime ({format_duration(granted)}) is within rotate_before, so every run will rotate it")

    effective = kc.build(alias, server, ca_data, token) if token else None
    content = kc.dump(effective) if effective else None
    changed = reason is not None
    if dest:
        existing, mode = kc.read_file(dest)
        dest_changed = content is None or existing != content or mode != 0o600
        if dest_changed and content is not None and not module.check_mode:
            kc.write_atomic(dest, content)
        changed = changed or dest_changed

    if effective:
        after = describe(effective, alias)
    else:  # check mode, a token would be minted: show what is known of the new kubeconfig
        after = {"context": alias, "server": server, "ca": fingerprint(kc.normal_ca(ca_data) or b""),
                 "token": "(minted on apply)", "token_expiry": "(granted by the server)"}
    result = {
        "changed": changed,
        "rotated": reason is not None,
        "reason": reason,
        "expiration_timestamp": expiry.isoformat() if expiry else None,
        "expires_in_seconds": int((expiry - now).total_seconds()) if expiry else None,
        "fingerprint": fingerprint(token),
        "service_account": expected_user,
        "server": server,
        "alias": alias,
        "diff": {"before": describe(current, alias), "after": after},
    }
    if dest:
        result["dest"] = dest
    if params["return_content"] and content is not None:
        result["kubeconfig"] = sources.return_in_clear(module, content)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
