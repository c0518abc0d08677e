"""Stand-in for pypa's get-pip.py, which ansible-test fetches from ci-files.testing.ansible.com.

That host is not reachable from our CI (only package registries are), so `make sanity` places
this file where ansible-test caches the bootstrap script. It does what get-pip.py does for
ansible-test: put pip into the empty sanity venv (from the interpreter's own ensurepip), then
install the requested packages (pip==X, ...) from the package index.
"""

import subprocess
import sys

# In a child process: ensurepip points PIP_CONFIG_FILE at /dev/null in its own
# environment, which would drop the machine's pip settings (index, CA bundle).
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
# get-pip.py options that plain `pip install` does not know.
ARGS = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade", *ARGS]))
