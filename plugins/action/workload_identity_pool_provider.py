# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# The module runs in the worker process when the task is local (plugin_utils/inprocess.py).
from __future__ import annotations

from ansible_collections.prow.build_cluster.plugins.plugin_utils.inprocess import InProcessAction as ActionModule  # noqa: F401  pylint: disable=unused-import
