# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Google credentials and endpoints, named as in google.cloud, defaulting to ADC."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  project:
    description:
      - Google Cloud project ID the resources live in.
      - Falls back to E(GCP_PROJECT).
    type: str
  auth_kind:
    description:
      - How to obtain credentials. C(application) uses Application Default Credentials
        (E(GOOGLE_APPLICATION_CREDENTIALS), gcloud's ADC, or the metadata server / Workload Identity).
      - C(serviceaccount) uses O(service_account_file) or O(service_account_contents);
        C(accesstoken) uses O(access_token).
      - Falls back to E(GCP_AUTH_KIND).
    type: str
    choices: [application, serviceaccount, accesstoken]
    default: application
  service_account_file:
    description:
      - Path of a service-account key file. Falls back to E(GCP_SERVICE_ACCOUNT_FILE).
    type: path
  service_account_contents:
    description:
      - Content of a service-account key file, as JSON text or a mapping. Never logged.
      - Falls back to E(GCP_SERVICE_ACCOUNT_CONTENTS).
    type: jsonarg
  access_token:
    description:
      - An OAuth2 access token. Never logged. Falls back to E(GCP_ACCESS_TOKEN).
    type: str
  impersonate_service_account:
    description:
      - Act as this service account (email), through IAM Credentials C(generateAccessToken).
        The caller needs C(roles/iam.serviceAccountTokenCreator) on it.
      - Falls back to E(GCP_IMPERSONATE_SERVICE_ACCOUNT).
    type: str
  scopes:
    description:
      - OAuth2 scopes. Falls back to E(GCP_SCOPES).
    type: list
    elements: str
    default: ['https://www.googleapis.com/auth/cloud-platform']
  api_endpoints:
    description:
      - Base URLs of Google APIs, replacing the production ones; the one mechanism for pointing the
        modules at another endpoint, such as the local sandbox's fake.
      - A mapping of service name to base URL, or JSON text of one, or the path of a JSON file holding one
        (the sandbox writes C(.sandbox/endpoints.json)).
      - 'Service names: C(iam), C(iamcredentials), C(sts), C(storage), C(secretmanager), C(container),
        C(cloudresourcemanager), C(oauth2).'
      - Falls back to E(GCP_API_ENDPOINTS).
    type: raw
notes:
  - O(service_account_file), O(service_account_contents) and O(access_token) are mutually exclusive.
  - Options can be set once for all modules of the group with C(module_defaults) and C(group/prow.build_cluster.gcp).
requirements:
  - google-auth
  - requests
  - tenacity
  - google-cloud-secret-manager and google-crc32c (for Secret Manager secrets and their IAM policies)
"""
