"""Local sandbox for prow.build_cluster.

Two components, one state directory (``.sandbox/`` by default, or ``$SANDBOX_DIR``):

* ``prow_sandbox.kube``: real kube-apiserver + embedded etcd processes on loopback,
  built from the Go launcher in ``sandbox/kube``.
* ``prow_sandbox.gcp``: an HTTP fake of the Google APIs the collection calls.

The public contract (``make sandbox``, ``.sandbox/env``, ``.sandbox/endpoints.json``)
is documented in docs/sandbox.md.
"""
