# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Every name check of the collection, in one place: a typo fails in milliseconds, before any call.

Each ``*_error`` function returns why a value is not a valid name, or None; the modules
call them before they connect, and the playbooks' pre-flight checks can call the same ones.
"""

from __future__ import annotations

import os
import re

# RFC 1123 label (namespaces) and subdomain (most object names), as Kubernetes validates them.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def dns_label_error(value, what):
    """Why ``value`` is not a valid RFC 1123 label (namespace names), or None."""
    if not value or len(value) > 63 or not _DNS_LABEL.match(value):
        return (
            f"{what} {value!r} is not a valid name: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def dns_subdomain_error(value, what):
    """Why ``value`` is not a valid RFC 1123 subdomain (most object names), or None."""
    if not value or len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        return (
            f"{what} {value!r} is not a valid name: use at most 253 lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return None


_PROJECT_ID = re.compile(r"^(?:[a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_ACCOUNT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
# The form only: account IDs are 6-30 characters, but Google-managed accounts
# (NUMBER-compute@developer..., service agents) follow other rules.
_GSA_EMAIL = re.compile(r"^[a-z0-9][-a-z0-9]*@[a-z0-9][-a-z0-9.:]*\.gserviceaccount\.com$")
_BUCKET_PART = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_GKE_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?$")
_LOCATION = re.compile(r"^[a-z]+-[a-z]+[0-9]{1,2}(?:-[a-z])?$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def project_id_error(value, what="project"):
    if not isinstance(value, str) or not _PROJECT_ID.match(value):
        return (f"{what} {value!r} is not a project ID: 6 to 30 lowercase letters, digits and '-', "
                "starting with a letter and not ending with '-' (the ID, not the display name or number)")
    return None


def account_id_error(value):
    if not isinstance(value, str) or not _ACCOUNT_ID.match(value):
        return (f"name {value!r} is not a service account ID: 6 to 30 lowercase letters, digits and '-', "
                "starting with a letter and not ending with '-' (the part before '@')")
    return None


def gsa_email_error(value, what="service account"):
    if not isinstance(value, str) or not _GSA_EMAIL.match(value):
        return (f"{what} {value!r} is not a Google service account email "
                "(ACCOUNT@PROJECT.iam.gserviceaccount.com)")
    return None


def normalize_bucket(value):
    """A bucket name without the gs:// prefix that gsutil and gcloud print."""
    return value[len("gs://"):].rstrip("/") if isinstance(value, str) and value.startswith("gs://") else value


def bucket_name_error(value):
    """Cloud Storage naming rules (https://cloud.google.com/storage/docs/buckets#naming)."""
    problem = None
    if not isinstance(value, str) or not 3 <= len(value) <= 222:
        problem = "it must be 3 to 63 characters (222 with dots)"
    elif not all(_BUCKET_PART.match(part) and len(part) <= 63 for part in value.split(".")):
        problem = ("use lowercase letters, digits, '-', '_' and '.', start and end with a letter or digit, "
                   "at most 63 characters between dots")
    elif "." not in value and len(value) > 63:
        problem = "without dots it must be at most 63 characters"
    elif value.startswith("goog") or "google" in value or "g00gle" in value:
        problem = "it may not start with 'goog' nor contain 'google'"
    elif re.match(r"^\d+\.\d+\.\d+\.\d+$", value):
        problem = "it may not look like an IP address"
    return f"bucket name {value!r} is not valid: {problem}" if problem else None


def secret_id_error(value):
    if not isinstance(value, str) or not _SECRET_ID.match(value):
        return f"secret ID {value!r} is not valid: 1 to 255 letters, digits, '-' and '_'"
    return None


def gke_name_error(value):
    if not isinstance(value, str) or not _GKE_NAME.match(value):
        return (f"cluster name {value!r} is not valid: 1 to 40 lowercase letters, digits and '-', "
                "starting with a letter and not ending with '-'")
    return None


def location_error(value):
    if not isinstance(value, str) or not _LOCATION.match(value):
        return f"location {value!r} is not a zone (us-west1-b) or a region (us-west1)"
    return None


def labels_error(labels):
    for key, value in (labels or {}).items():
        if not _LABEL_KEY.match(str(key)):
            return (f"label key {key!r} is not valid: start with a lowercase letter, then up to 62 "
                    "lowercase letters, digits, '-' or '_'")
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            return f"label {key}: value {value!r} is not valid: up to 63 lowercase letters, digits, '-' or '_'"
    return None


def at_least_error(value, minimum, what=None):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        return f"{what}: must be at least {minimum}" if what else f"{value!r} is less than {minimum}, the minimum"
    return None


def output_dir_error(path, what="output_dir"):
    """Why files cannot be written under directory ``path`` (created with its parents if missing), or None."""
    if not isinstance(path, str) or not path:
        return f"{what}: give a directory"
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{what} {path!r} is a file, not a directory"
    # The nearest part that exists is where the missing ones would be created.
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{what} {path!r} cannot be created: {existing!r} is a file, not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{what} {path!r} is not writable: {existing!r} does not let this user write"
    return None


# principal:// (one identity) and principalSet:// (a set) of a workload identity pool, named by
# project NUMBER as IAM requires; workforce pools have no project.
_POOL_PREFIX = (r"//iam\.googleapis\.com/(?:projects/[0-9]+/locations/global/workloadIdentityPools"
                r"|locations/global/workforcePools)/[a-z0-9][-a-z0-9.]*[a-z0-9]/")
_PRINCIPAL = re.compile(r"^principal:" + _POOL_PREFIX + r"subject/\S+$")
_PRINCIPAL_SET = re.compile(r"^principalSet:" + _POOL_PREFIX
                            + r"(\*|group/\S+|attribute\.[a-z0-9_]+/\S+|namespace/[a-z0-9-]+|kubernetes\.cluster/https://\S+)$")
PRINCIPAL_FORMS = (
    "principal://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/subject/SUBJECT, or "
    "principalSet://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/"
    "{*, group/GROUP, attribute.NAME/VALUE, namespace/NAMESPACE}"
)


def principal_member_error(value):
    """Why a ``principal://``/``principalSet://`` member is not one IAM accepts, or None.

    IAM names pools by project NUMBER: a project ID there is refused by Google, so here too.
    """
    kind = value.partition(":")[0] if isinstance(value, str) else None
    if kind not in ("principal", "principalSet"):
        return f"member {value!r} is not a principal:// or principalSet:// member"
    if not (_PRINCIPAL if kind == "principal" else _PRINCIPAL_SET).match(value):
        return f"member {value!r} is not of the form {PRINCIPAL_FORMS}"
    return None


def first_error(*errors):
    """The first of several optional error messages (validation reads as a flat list)."""
    return next((e for e in errors if e), None)


GKE_CLUSTER_FORMAT = "projects/PROJECT/locations/LOCATION/clusters/CLUSTER"


def parse_gke_name(value):
    """(project, location, cluster) of ``projects/P/locations/L/clusters/C``, or ValueError."""
    parts = (value or "").split("/")
    if len(parts) != 6 or parts[0] != "projects" or parts[2] != "locations" or parts[4] != "clusters" or not all(parts[1::2]):
        raise ValueError(f"gke: {value!r} is not of the form {GKE_CLUSTER_FORMAT}")
    return parts[1], parts[3], parts[5]
