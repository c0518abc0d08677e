# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Shared ``attributes`` blocks: what every module of the collection supports."""

from __future__ import annotations


class ModuleDocFragment:
    # Every module: real check mode, real diff mode, idempotent.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: >-
      Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
      Secrets (tokens, kubeconfigs, payloads) appear only as fingerprints.
    support: full
  idempotent:
    description: >-
      When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change and makes no write call.
    support: full
"""

    GCP = r"""
attributes:
  action_group:
    description: Use C(group/prow.build_cluster.gcp) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - prow.build_cluster.gcp
"""

    K8S = r"""
attributes:
  action_group:
    description: Use C(group/prow.build_cluster.k8s) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - prow.build_cluster.k8s
"""
