#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: verify_build_cluster
short_description: Prove that Prow can use a build cluster and that its jobs can write results
version_added: 0.1.0
description:
  - Checks, link by link, what Prow relies on, and fails naming the first broken link of each chain and how to mend it.
  - "Prow's credential: the stored kubeconfig (a file, inline content or a Secret Manager secret) has a context
    O(alias) for this cluster's server; the build cluster's TokenReview accepts its token; that token passes
    SelfSubjectAccessReviews for C(create), C(delete), C(list), C(watch), C(get) and C(patch) on C(pods) in
    O(pod_namespace), as prow-controller-manager checks at start-up; and it is valid for at least O(min_validity)."
  - "Job uploads (with O(workload_identity)): the job KSA exists and names a GSA in C(iam.gke.io/gcp-service-account)
    (O(workload_identity.gcp_service_account) if given); a token of the KSA (TokenRequest with audience C(POOL)) is
    exchanged at STS for a federated token and at IAM Credentials for the GSA's access token, exactly as GKE's
    metadata server does for a pod; and with that token an object is written to the results bucket and deleted
    again. No pod is started, so this takes seconds."
  - "A keyless kubeconfig (C(credential_model: gke_exec), its user an exec plugin): the stored kubeconfig has this
    cluster's server and CA; its exec credential is C(gke-gcloud-auth-plugin --use_application_default_credentials);
    and each of O(exec_identities) passes SubjectAccessReviews for the same six verbs (RBAC, then GKE's IAM). There
    is no token, so no expiry."
  - "With O(workload_identity.job_identity=direct) (GKE direct resource access): the job KSA exists and names no GSA;
    its token is exchanged at STS, and the federated token itself (the KSA's C(principal://) member) writes the probe
    object; there is no impersonation link."
  - "With O(workload_identity.job_identity=federated) (a cluster outside GKE, Workload Identity Federation): the job KSA
    exists and names no GSA; the credential configuration Secret the jobs mount (O(workload_identity.credential_secret))
    is an C(external_account) configuration of a pool's provider; a token of the KSA with the apiserver's default
    audiences (the one every container of a pod has) is exchanged at STS for that provider; and the federated token
    (the KSA's C(principal://) member of that pool) writes the probe object. No O(gke) connection is needed."
  - Each of these calls is made as the KSA or the GSA, with their token alone on a plain HTTP session, never with
    the operator's credentials, so a link holds only if the jobs' identity may do what it proves.
  - "With a Secret Manager O(stored.secret) read as C(latest), its versions are listed: consumers read the newest
    version whatever its state, so that one must be enabled (an older enabled version does not stand in for it)."
  - Reads only, except the probe object, which is deleted at once (by the operator if the GSA cannot delete it); it
    reports C(changed=false). In check mode the probe object is not written, and the C(bucket write) link is
    reported as not checked (C(ok=null)).
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  alias:
    description: Context name of the build cluster in the stored kubeconfig.
    type: str
    required: true
  stored:
    description:
      - Where Prow's kubeconfig is stored. Exactly one of O(stored.path), O(stored.content), O(stored.secret).
      - Required unless O(component_secrets) is given (per-component access, which has no kubeconfig of Prow's own).
    type: dict
    suboptions:
      name:
        description: A label for messages.
        type: str
      path:
        description: Path of a kubeconfig file.
        type: path
      content:
        description: Kubeconfig content. Never logged.
        type: raw
      secret:
        description: Secret Manager secret, C(projects/PROJECT/secrets/SECRET[/versions/VERSION]).
        type: str
  pod_namespace:
    description: Namespace Prow creates job pods in.
    type: str
    default: test-pods
  exec_identities:
    description:
      - With a keyless (exec plugin) stored kubeconfig, the Google identities (emails) the plugin runs as in Prow's
        pods (C(prow.control_plane_service_accounts)), whose rights are checked.
    type: list
    elements: str
    default: []
  exec_component_identities:
    description:
      - "A keyless kubeconfig with per-component access: C({component: Google service account email}) of Prow's
        components (C(prow-controller-manager), C(sinker), C(crier), C(deck)). Each identity must pass
        SubjectAccessReviews for exactly the verbs its component checks (the Role the credentials role binds), and
        must not read Secrets in O(pod_namespace), which none of them needs."
      - Used instead of, or besides, O(exec_identities).
    type: dict
    default: {}
  component_secrets:
    description:
      - "Per-component access of the token model: C({component: projects/P/secrets/S}), the Secret Manager secret of
        each Prow component's own kubeconfig, instead of O(stored). Each is checked as O(stored) is (its context, its token by TokenReview,
        its expiry), and its token must pass SelfSubjectAccessReviews for exactly the verbs its component checks and
        must not read Secrets in O(pod_namespace)."
    type: dict
    default: {}
  min_validity:
    description: The stored token must stay valid at least this long (Go-style duration).
    type: str
    default: 6h
  workload_identity:
    description:
      - Also prove the jobs' Workload Identity chain and bucket access. Needs a O(gke) connection, but with
        O(workload_identity.job_identity=federated).
    type: dict
    suboptions:
      service_account:
        description: The job KSA.
        type: str
        default: prowjob-default-sa
      namespace:
        description: Namespace of the job KSA; O(pod_namespace) by default.
        type: str
      gcp_service_account:
        description:
          - Email of the job GSA the KSA must be annotated with. Without it, any GSA the annotation names is
            followed (and must then let the KSA impersonate it and write to the bucket).
        type: str
      job_identity:
        description:
          - C(gsa), the jobs act as a GSA named by the KSA's annotation; C(direct), they use the KSA's own federated
            identity, and the KSA must carry no annotation; C(federated), a cluster outside GKE whose jobs use the
            KSA's identity in a Workload Identity Federation pool, through a credential configuration Secret.
        type: str
        choices: [gsa, direct, federated]
        default: gsa
      credential_secret:
        description: With O(workload_identity.job_identity=federated), the credential configuration Secret (in the KSA's namespace).
        type: str
        default: gcs-credentials
      credential_secret_key:
        description: The key of O(workload_identity.credential_secret) holding the configuration.
        type: str
        default: service-account.json
      bucket:
        description: Results bucket the jobs write to.
        type: str
        required: true
      object_prefix:
        description: Prefix of the probe object.
        type: str
        default: prow-build-cluster-verify
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.attributes.K8S
  - prow.build_cluster.k8s_auth
  - prow.build_cluster.gcp_auth
notes:
  - The connection options (O(gke), O(kubeconfig), ...) are the operator's admin access to the build cluster, used
    for the TokenReview and to mint the job KSA's short-lived token; the stored kubeconfig is used only for what
    Prow itself does with it.
"""

EXAMPLES = r"""
- name: Prove the build cluster works for Prow
  prow.build_cluster.verify_build_cluster:
    gke: projects/team-a-build/locations/us-central1-b/clusters/prow-build
    alias: build-team-a
    stored:
      secret: projects/my-prow-project/secrets/prow_build_cluster_kubeconfig_build-team-a
    workload_identity:
      bucket: my-prow-results
  register: verified
"""

RETURN = r"""
checks:
  description: Every link checked, in order.
  returned: always
  type: list
  elements: dict
  contains:
    link:
      description: What was checked.
      type: str
    ok:
      description: Whether it holds; null when it was not checked because an earlier link is broken.
      type: bool
    detail:
      description: What was found.
      type: str
    fix:
      description: How to mend it, for a broken link.
      type: str
token_expiry:
  description: Expiry of the stored token (ISO 8601).
  returned: when the stored kubeconfig has a token
  type: str
gcp_service_account:
  description: The GSA jobs act as.
  returned: with workload_identity, job_identity gsa
  type: str
job_principal:
  description: The job KSA's C(principal://) member, which writes to the bucket.
  returned: with workload_identity, job_identity direct or federated
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import verify_build_cluster as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
