# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one retry helper: bounded, jittered exponential backoff on transient failures."""

from __future__ import annotations

import traceback

try:
    import tenacity

    HAS_TENACITY = True
    TENACITY_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported through missing_required_lib
    HAS_TENACITY = False
    TENACITY_IMPORT_ERROR = traceback.format_exc()

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError

# Bounded and jittered, so that concurrent runs (several onboardings, a rotation
# job and a human) do not retry in lock step. About 30 s in the worst case.
RETRY_ATTEMPTS = 6
RETRY_MAX_WAIT = 8.0
RETRY_INITIAL_WAIT = 0.5


def require_tenacity(module):
    if not HAS_TENACITY:
        module.fail_json(msg=missing_required_lib("tenacity"), exception=TENACITY_IMPORT_ERROR)


def call_with_retry(func, *args, retry_on=None, attempts=RETRY_ATTEMPTS, **kwargs):
    """Call ``func`` and retry it on transient failures with jittered exponential backoff.

    ``retry_on(exc) -> bool`` decides what is transient; by default an ApiError whose
    status is 429/5xx or that never got a response. The last error is re-raised as is.
    """
    decide = retry_on or (lambda exc: isinstance(exc, ApiError) and exc.transient)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_random_exponential(multiplier=RETRY_INITIAL_WAIT, max=RETRY_MAX_WAIT),
        retry=tenacity.retry_if_exception(decide),
        reraise=True,
    )
    return retrying(func, *args, **kwargs)
