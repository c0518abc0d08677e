"""A faithful HTTP fake of the Google APIs prow.build_cluster calls (docs/sandbox.md).

* :class:`FakeGCP` (``server``): the fake and its Python API, in-process.
* :mod:`.daemon`: ``start``/``stop`` of the fake as a background process for a state dir.
* :mod:`.testing`: pytest fixtures.
"""

from .server import FakeGCP

__all__ = ["FakeGCP"]
