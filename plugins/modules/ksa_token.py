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
  - Every token is bound (C(boundObjectRef)) to a Secret of its own, created for it just before the TokenRequest in the
    ServiceAccount's namespace, named C(SERVICE_ACCOUNT-token-XXXXX), type C(Opaque), with no data, labelled
    C(app.kubernetes.io/managed-by=prow.build_cluster.ksa_token) and annotated C(prow.build-cluster/service-account).
    Deleting that Secret revokes that token alone. A current token bound to no Secret (minted before this, or by
    hand) is rotated, since it could not be revoked.
  - O(state=revoke_others), once the new kubeconfig is published (stored where Prow reads it, O(current)), deletes the
    Secrets of the ServiceAccount's other tokens, which revokes them; O(state=absent) deletes every one (offboarding).
    Revoking is a separate call so that nothing is revoked before the new token is published; a run that fails in
    between leaves the old token working, and the next run's O(state=revoke_others) completes the revocation.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  state:
    description:
      - C(present) mints a token when the current one cannot be kept, and writes or returns the kubeconfig.
      - C(revoke_others) keeps the token of the published kubeconfig (O(current), or O(dest)) and revokes every other
        token of the ServiceAccount this module minted (those older than O(revoke_after), see there). It refuses, and
        revokes nothing, when the published token does not authenticate as the ServiceAccount or is bound to no Secret;
        in check mode that is no change (a real run mints and stores first).
      - C(absent) revokes every token of the ServiceAccount this module minted (deletes their Secrets). A cluster or
        namespace that is gone has nothing to revoke.
    type: str
    choices: [present, revoke_others, absent]
    default: present
  revoke_after:
    description:
      - With O(state=revoke_others), a token's Secret is deleted only when both it and the published token's Secret
        are at least this old, for example C(15m) so that a consumer that syncs on a schedule (External Secrets'
        C(refreshInterval)) loads the new token before the old one stops working. Until then it is reported in
        RV(pending), and a later run revokes it.
      - C(0) revokes at once.
    type: str
    default: '0'
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
      - Required unless O(state=absent).
    type: str
  duration:
    description:
      - Requested token lifetime, Go-style (C(48h), C(90m)) or seconds. At least C(10m), the API's minimum.
      - The platform's apiserver grants no longer token (see O(platform)) - C(48h) on GKE, C(24h) on EKS and AKS -
        so a longer duration is refused before any write.
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
      - The platform of the cluster, whose token lifetime cap O(duration) must respect - C(gke) 48h, C(eks) 24h
        (EKS caps service-account tokens at 24h), C(aks) 24h (as reported for the AKS OIDC issuer); C(other) has none.
      - C(auto) treats the cluster as GKE when connected with O(gke), or when the server's version contains C(-gke.),
        else as C(other).
      - C(gke) always applies the GKE cap, for example for a GKE cluster reached through a proxy.
    type: str
    choices: [auto, gke, eks, aks, other]
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
          - C(latest) is the most recently created version, whatever its state. If that version is disabled or
            destroyed, nobody reading C(latest) gets its token, so it counts as no usable token and a new one is minted
            (RV(reason) names the version and its state), and storing it (M(prow.build_cluster.secret_manager_secret))
            adds the version that makes C(latest) readable again.
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

- name: Once it is stored, revoke the build cluster's other tokens
  prow.build_cluster.ksa_token:
    gke: projects/my-project/locations/us-central1/clusters/build-myteam
    alias: build-myteam
    state: revoke_others
    revoke_after: 15m
    current:
      secret: projects/my-prow-project/secrets/prow_build_cluster_kubeconfig_build-myteam

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
  returned: with O(state=present)
  type: bool
reason:
  description: Why the token was (or would be) rotated; null when the current one was kept.
  returned: with O(state=present)
  type: str
  sample: the token expires at 2026-11-24T09:00:00+00:00, within rotate_before
expiration_timestamp:
  description:
    - Expiry of the token in the kubeconfig (ISO 8601). For a new token, the one the server granted.
    - Null in check mode when a token would be minted.
  returned: with O(state=present)
  type: str
  sample: '2026-11-25T12:00:00+00:00'
expires_in_seconds:
  description: Seconds until RV(expiration_timestamp).
  returned: with O(state=present)
  type: int
fingerprint:
  description: Fingerprint of the token in the kubeconfig (null in check mode when one would be minted).
  returned: with O(state=present)
  type: str
  sample: sha256:5f2b8c0d9e1a3b4c
service_account:
  description: The identity the token authenticates as.
  returned: always
  type: str
  sample: system:serviceaccount:default:serviceaccount-cluster-admin
server:
  description: API server URL written in the kubeconfig.
  returned: with O(state=present)
  type: str
alias:
  description: Name of the kubeconfig's cluster, user and context.
  returned: with O(state=present)
  type: str
dest:
  description: Path of the kubeconfig file, when O(dest) is set.
  returned: when O(dest) is set
  type: str
bound_secret:
  description: Name of the Secret the token is bound to (null in check mode when one would be minted).
  returned: with O(state=present)
  type: str
  sample: serviceaccount-cluster-admin-token-x7k2p
revoked:
  description: The Secrets deleted (in check mode, that would be), each revoking its token.
  returned: with O(state=revoke_others) or O(state=absent)
  type: list
  elements: str
pending:
  description: The other tokens' Secrets kept for now, younger than O(revoke_after).
  returned: with O(state=revoke_others) or O(state=absent)
  type: list
  elements: str
kept:
  description: The Secret of the published token, which stays.
  returned: with O(state=revoke_others) or O(state=absent)
  type: str
kubeconfig:
  description: The kubeconfig (YAML text), with its token. Only in a task with C(no_log=true).
  returned: when O(return_content=true), except in check mode when a token would be minted
  type: str"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import ksa_token as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
