#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: workload_identity_binding
short_description: Bind a Kubernetes service account to a Google service account through Workload Identity
version_added: 0.1.0
description:
  - The two halves of GKE Workload Identity for Prow's job pods, what C(bind-service-accounts.sh) did.
  - In the cluster, the Kubernetes service account (KSA) O(namespace)/O(service_account), created if absent,
    annotated C(iam.gke.io/gcp-service-account) with the email of O(gcp_service_account).
  - On the Google service account (GSA), C(roles/iam.workloadIdentityUser) for the member
    C(serviceAccount:POOL[NAMESPACE/KSA]), added to the GSA's IAM policy with an etag read-modify-write
    (retried when someone else changes the policy meanwhile). No other binding is touched. A GSA created
    seconds earlier that IAM still answers 404 or 403 for is waited for (bounded).
  - When connected with O(gke), the cluster's Workload Identity pool is checked against the pool before
    any write; a cluster without Workload Identity, or with another project's pool, is an error.
  - O(state=absent) removes only what this module adds, the annotation (if it still names this GSA)
    and that one member; the KSA itself stays.
  - With O(job_identity=direct) (GKE direct resource access, no GSA) the KSA is created if absent and any
    C(iam.gke.io/gcp-service-account) annotation is removed (an annotation makes the pod impersonate that GSA);
    no GSA is read or written, and RV(member) is the KSA's C(principal://) member of the pool, by the pool
    project's number (read from Cloud Resource Manager), for a policy to grant (see M(prow.build_cluster.gcp_iam_member)).
    With O(state=absent) nothing is changed and the cluster is not reached (it may be gone); RV(member) is
    returned for the grant to be revoked.
  - In check mode, a GSA that does not exist yet (404; a real run creates it in an earlier task) is no error;
    the module reports C(changed) with a C(msg) saying what it would grant.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  namespace:
    description: Namespace of the KSA; it must exist.
    type: str
    default: test-pods
  service_account:
    description: Name of the KSA; Prow's C(default_service_account_name) for job pods.
    type: str
    default: prowjob-default-sa
  gcp_service_account:
    description:
      - Email of the GSA the KSA acts as. It may live in another project than the cluster.
      - Required with O(job_identity=gsa).
    type: str
  job_identity:
    description:
      - C(gsa), the KSA impersonates O(gcp_service_account) (annotation and C(roles/iam.workloadIdentityUser)).
      - C(direct), the KSA's own federated identity is used (no annotation, no GSA); grant RV(member) where the jobs write.
      - C(federated), a cluster outside GKE through Workload Identity Federation (O(federation_pool) of O(project),
        O(federation_provider) for this cluster's issuer, made by M(prow.build_cluster.workload_identity_pool_provider)
        with C(google.subject=assertion.sub)), the KSA without annotation, its member
        C(principal://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/subject/system:serviceaccount:NS:KSA)
        returned as RV(member) to grant, and the Secret O(credential_secret) in O(namespace) whose key
        O(credential_secret_key) holds the C(external_account) credential configuration (audience the provider's,
        subject token the file O(token_path)), which Prow's decoration mounts as C(gcs_credentials_secret). With
        O(state=absent) that Secret is deleted (only one carrying the label
        C(app.kubernetes.io/managed-by=prow.build_cluster)) and the KSA stays.
    type: str
    choices: [gsa, direct, federated]
    default: gsa
  federation_pool:
    description: With O(job_identity=federated), the Workload Identity Federation pool ID (in O(project)).
    type: str
  federation_provider:
    description: With O(job_identity=federated), the ID of this cluster's OIDC provider in O(federation_pool).
    type: str
  credential_secret:
    description: With O(job_identity=federated), the name of the credential configuration Secret in O(namespace).
    type: str
    default: gcs-credentials
  credential_secret_key:
    description: With O(job_identity=federated), the key of that Secret holding the configuration (the file Prow reads).
    type: str
    default: service-account.json
  token_path:
    description:
      - With O(job_identity=federated), the service-account token file of the job pod's containers (the
        configuration's C(credential_source.file)), by default the automounted one, which every container has.
    type: str
    default: /var/run/secrets/kubernetes.io/serviceaccount/token
  workload_pool:
    description:
      - The cluster's Workload Identity pool, C(CLUSTER_PROJECT.svc.id.goog).
      - Defaults to the project of O(gke), else O(project).
    type: str
  state:
    description: Whether the binding should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.gcp_auth
  - prow.build_cluster.k8s_auth
notes:
  - The KSA half uses the Kubernetes connection options (O(kubeconfig), O(context), O(host)... or O(gke));
    the GSA half uses the Google ones.
  - New bindings take a short while to work everywhere; Google documents up to a few minutes.
"""

EXAMPLES = r"""
- name: Let job pods upload as the job GSA
  prow.build_cluster.workload_identity_binding:
    gke: projects/my-build-project/locations/us-west1-b/clusters/my-build-project
    namespace: test-pods
    service_account: prowjob-default-sa
    gcp_service_account: prowjob-default-sa@my-build-project.iam.gserviceaccount.com

- name: Or no GSA at all, direct resource access for the KSA's own identity
  prow.build_cluster.workload_identity_binding:
    gke: projects/my-build-project/locations/us-west1-b/clusters/my-build-project
    job_identity: direct
  register: job_identity

- name: Let that identity write job results
  prow.build_cluster.gcp_iam_member:
    resource_type: bucket
    resource: my-prow-results
    role: roles/storage.objectAdmin
    member: "{{ job_identity.member }}"
"""

RETURN = r"""
member:
  description:
    - The KSA's Workload Identity member, as granted on the GSA.
    - With O(job_identity=direct), its C(principal://) member, to grant on the resources the jobs use.
  returned: always
  type: str
  sample: serviceAccount:my-build-project.svc.id.goog[test-pods/prowjob-default-sa]
workload_pool:
  description: The pool used.
  returned: always
  type: str
ksa_created:
  description: Whether the KSA was (or in check mode would be) created.
  returned: always
  type: bool
annotation:
  description: The KSA's C(iam.gke.io/gcp-service-account) annotation after the run.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import workload_identity_binding as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
