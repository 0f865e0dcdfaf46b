"""The installed top-level package ``fitq``: the client's public surface.

The repository keeps ``service/`` and ``worker/`` as its folders; ``pyproject.toml``
installs them as ``fitq.service`` and ``fitq.worker`` (its ``package-dir``), so nothing
installed claims a generic name such as ``service`` that a user's own file could shadow.
This folder becomes ``fitq`` itself.

    from fitq import Client
"""

from importlib.metadata import PackageNotFoundError, version

from fitq.service.client import ApiError, Client, Job, JobFailed

try:
    __version__ = version("fitq")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["ApiError", "Client", "Job", "JobFailed", "__version__"]
