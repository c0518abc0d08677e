# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.yaml_files; plugins/modules/yaml_files.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

import os

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc
from ansible_collections.prow.build_cluster.plugins.module_utils._values import fingerprint


def render(documents):
    docs = documents if isinstance(documents, list) else [documents]
    return "---\n".join(kc.dump(doc) for doc in docs)


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": {
            "dest": {"type": "path", "required": True},
            "files": {"type": "dict", "required": True},
            "mode": {"type": "raw", "default": "0644"},
        },
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    if not kc.HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    dest = module.params["dest"]
    try:
        mode = int(str(module.params["mode"]), 8)
    except ValueError:
        module.fail_json(msg=f"mode: {module.params['mode']!r} is not an octal mode such as '0644'")
    for name in module.params["files"]:
        if not name or os.path.basename(name) != name or name in (".", ".."):
            module.fail_json(msg=f"files: {name!r} must be a plain file name, without a directory part")

    written, before, after = [], {}, {}
    for name, documents in sorted(module.params["files"].items()):
        content = render(documents)
        current, current_mode = kc.read_file(os.path.join(dest, name))
        after[name] = fingerprint(content)
        if current is not None:
            before[name] = fingerprint(current)
        if current != content or current_mode != mode:
            written.append(name)
            if not module.check_mode:
                os.makedirs(dest, exist_ok=True)
                kc.write_atomic(os.path.join(dest, name), content, mode=mode)
    module.exit_json(changed=bool(written), written=written, dest=dest,
                     diff={"before": before, "after": after, "before_header": dest, "after_header": dest})
