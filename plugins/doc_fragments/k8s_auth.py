# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Kubernetes connection options, named as in kubernetes.core, plus gke."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path of a kubeconfig file, or its content as a mapping. Credentials in a mapping are masked in output.
      - Defaults to the first file of E(KUBECONFIG), then C(~/.kube/config).
      - Falls back to E(K8S_AUTH_KUBECONFIG).
    type: raw
  context:
    description:
      - Context of the kubeconfig to use; its current context by default.
      - Falls back to E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - API server URL, used instead of a kubeconfig, with O(api_key) and O(ca_cert).
      - Falls back to E(K8S_AUTH_HOST).
    type: str
  api_key:
    description:
      - Bearer token for O(host). Never logged.
      - Falls back to E(K8S_AUTH_API_KEY).
    type: str
  ca_cert:
    description:
      - CA bundle that verifies the API server's certificate, for O(host).
      - Falls back to E(K8S_AUTH_SSL_CA_CERT).
    type: path
    aliases: [ssl_ca_cert]
  validate_certs:
    description:
      - Whether to verify the API server's certificate. Leave it on; the CA comes with every kubeconfig this collection builds.
      - Falls back to E(K8S_AUTH_VERIFY_SSL).
    type: bool
    aliases: [verify_ssl]
  gke:
    description:
      - Connect to a GKE cluster named C(projects/PROJECT/locations/LOCATION/clusters/CLUSTER) through the GKE API,
        with the caller's Google credentials as bearer token (Application Default Credentials, or the
        E(GCP_*) variables of the GCP modules, and E(GCP_API_ENDPOINTS)), as gencred's GKE mode did.
      - Mutually exclusive with O(kubeconfig), O(context) and O(host).
      - In check mode, a cluster that does not exist yet (a real run creates it in an earlier task) is no
        error; the module reports C(changed) with a C(msg) saying what it would do, and nothing else.
    type: str
notes:
  - Connection options can be set once for all modules of the group with
    C(module_defaults) and C(group/prow.build_cluster.k8s).
requirements:
  - kubernetes (Python client, 35.x)
  - tenacity
"""
