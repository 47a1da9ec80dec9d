"""Ferry's Python client: talk to the ``ferryd`` background transfer daemon over its Unix
socket, synchronously (:class:`Client`) or on asyncio (:class:`ferry_client.aio.AsyncClient`),
receive a job's notifications in a :class:`Handler`, and write handler programs the daemon
starts on demand (:func:`serve_handler`). No dependencies beyond the standard library."""

import logging

from .client import SETTLED, Client, serve_handler
from . import errors
from .errors import *  # noqa: F403 - every error class is public here
from .handler import Handler, activated, current_delivery_id
from .transport import find_socket

__version__ = "0.1.0"

#: BITS notify flags for ``job_set(notify_flags=...)``.
NOTIFY_JOB_TRANSFERRED = 0x1
NOTIFY_JOB_ERROR = 0x2
NOTIFY_DISABLE = 0x4
NOTIFY_JOB_MODIFICATION = 0x8
NOTIFY_FILE_TRANSFERRED = 0x10
NOTIFY_FILE_RANGES_TRANSFERRED = 0x20

# A library logs only where the application asked it to.
logging.getLogger("ferry_client").addHandler(logging.NullHandler())

__all__ = [
    "Client",
    "Handler",
    "serve_handler",
    "activated",
    "current_delivery_id",
    "find_socket",
    "SETTLED",
    "NOTIFY_JOB_TRANSFERRED",
    "NOTIFY_JOB_ERROR",
    "NOTIFY_DISABLE",
    "NOTIFY_JOB_MODIFICATION",
    "NOTIFY_FILE_TRANSFERRED",
    "NOTIFY_FILE_RANGES_TRANSFERRED",
]
__all__ += errors.__all__
