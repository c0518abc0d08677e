#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: workload_identity_pool_provider
short_description: Create, update or delete an OIDC provider of a Workload Identity Federation pool
version_added: 0.1.0
description:
  - Ensures the OIDC provider C(.../workloadIdentityPools/POOL/providers/NAME) (IAM v1) that accepts a build
    cluster's Kubernetes service-account tokens, so that job pods of a cluster outside GKE get Google credentials
    with no key file.
  - With O(oidc_from_cluster), the issuer is read from the cluster's apiserver (C(/.well-known/openid-configuration),
    through the Kubernetes connection options), and its signing keys (C(/openid/v1/jwks)) are uploaded as the
    provider's JWKS unless the issuer's discovery document is public (O(upload_jwks)), since Google cannot reach a private
    apiserver.
  - Only the fields given are compared (the JWKS as data, not text); fields that differ are changed with one PATCH
    naming only them. Every write is a long-running operation, waited for. A soft-deleted provider is undeleted.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  name:
    description: The provider ID, 4 to 32 of C([a-z0-9-]), not starting with C(gcp-).
    type: str
    required: true
  pool:
    description: The pool ID (M(prow.build_cluster.workload_identity_pool)).
    type: str
    required: true
  issuer_uri:
    description:
      - The OIDC issuer (C(https://...)), the C(iss) of the tokens. Required unless O(oidc_from_cluster).
    type: str
  allowed_audiences:
    description:
      - Audiences a token may carry. Empty, the provider's own resource name (C(//iam.googleapis.com/...) or
        C(https://iam.googleapis.com/...)) is expected, which RV(audience) returns.
    type: list
    elements: str
    default: []
  jwks_json:
    description: The issuer's keys as a JWKS document, for an issuer Google cannot reach.
    type: str
  oidc_from_cluster:
    description: Read the issuer (and, see O(upload_jwks), the keys) from the cluster the Kubernetes options name.
    type: bool
    default: false
  allow_pod_tokens:
    description:
      - With O(oidc_from_cluster), also allow the audiences of the tokens a pod has without any volume of its own, the
        cluster's issuer (kube-apiserver's default C(--api-audiences); a cluster with other ones names them in
        O(allowed_audiences)), and the provider's own resource name (which a non-empty list would otherwise exclude).
      - So that every container of a pod, Prow's sidecar and initupload included, can exchange the automounted
        service-account token (C(/var/run/secrets/kubernetes.io/serviceaccount/token)).
    type: bool
    default: false
  upload_jwks:
    description:
      - With O(oidc_from_cluster), whether the cluster's keys are uploaded. C(auto) uploads them unless an anonymous
        HTTPS GET of the issuer's discovery document answers it.
    type: str
    choices: [auto, always, never]
    default: auto
  attribute_mapping:
    description: Google attributes from token claims (CEL); C(google.subject) is required.
    type: dict
    default: {"google.subject": "assertion.sub"}
  attribute_condition:
    description: A CEL condition a token must meet.
    type: str
  display_name:
    description: Display name, at most 32 characters.
    type: str
  description:
    description: Description, at most 256 characters.
    type: str
  disabled:
    description: Whether the provider is disabled.
    type: bool
  state:
    description: Whether the provider should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.attributes.K8S
  - prow.build_cluster.gcp_auth
  - prow.build_cluster.k8s_auth
"""

EXAMPLES = r"""
- name: Accept the service-account tokens of a build cluster outside GKE
  prow.build_cluster.workload_identity_pool_provider:
    project: my-prow-project
    pool: prow-build-clusters
    name: build-team-b
    kubeconfig: ~/.kube/config
    context: build-team-b
    oidc_from_cluster: true
  register: provider
"""

RETURN = r"""
provider:
  description: The provider as IAM returns it; empty when absent, or not yet created in check mode.
  returned: always
  type: dict
audience:
  description: The audience of a token exchange at STS for this provider (also a job's credential configuration's).
  returned: when present
  type: str
  sample: //iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/prow-build-clusters/providers/build-team-b
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import workload_identity_pool_provider as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
