# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filter duration_seconds: the modules' own duration parser, for playbook pre-flight checks."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.prow.build_cluster.plugins.module_utils._values import parse_duration


def duration_seconds(value):
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"duration_seconds": duration_seconds}
