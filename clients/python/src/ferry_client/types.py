"""The wire's objects as :class:`typing.TypedDict`: a result is a plain ``dict`` that a type
checker knows the keys of. Fields added by newer daemons appear in the dict too (clients must
ignore what they do not know), and the field lists follow the protocol's documentation."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional, TypedDict

if TYPE_CHECKING:  # pragma: no cover - for ``**kwargs: Unpack[SetChanges]`` annotations only
    if sys.version_info >= (3, 11):
        from typing import Unpack as Unpack
    else:
        from typing_extensions import Unpack as Unpack


__all__ = [
    "JobState",
    "Priority",
    "JobType",
    "Validation",
    "FileRange",
    "FileSpec",
    "Progress",
    "JobTimes",
    "Waiting",
    "ErrorInfo",
    "Job",
    "File",
    "Event",
    "Credentials",
    "SetChanges",
    "HelloResult",
    "CreateResult",
    "AddFilesResult",
    "FilesResult",
    "ListResult",
    "StateResult",
    "CompleteResult",
    "HandlerInfo",
    "HandlerListResult",
    "HandlerAttachResult",
    "EventsReadResult",
    "Empty",
    "Params",
]

#: A job's state (BITS ``BG_JOB_STATE``).
JobState = Literal[
    "queued",
    "connecting",
    "transferring",
    "suspended",
    "error",
    "transient_error",
    "transferred",
    "acknowledged",
    "cancelled",
]
#: A job's priority.
Priority = Literal["foreground", "high", "normal", "low"]
#: A job's type.
JobType = Literal["download", "upload", "upload_reply"]
#: A file's validation state (BITS ``SetValidationState``).
Validation = Literal["unset", "valid", "invalid"]
#: Params of any call: a JSON object.
Params = Dict[str, Any]


class FileRange(TypedDict):
    """One byte range of a ranged file; ``length`` ``None`` means to the end."""

    offset: int
    length: Optional[int]


class _FileSpecRequired(TypedDict):
    remote_url: str
    local_path: str


class FileSpec(_FileSpecRequired, total=False):
    """A file to add to a job: ``remote_url`` (http, https or file) and an absolute
    ``local_path``; optionally the expected ``sha256`` and ``ranges`` to concatenate."""

    sha256: str
    ranges: List[FileRange]


class Progress(TypedDict):
    """Byte and file counts of a job (``bytes_total`` ``None`` while a size is unknown)."""

    bytes_total: Optional[int]
    bytes_transferred: int
    files_total: int
    files_transferred: int


class JobTimes(TypedDict):
    """A job's timestamps (RFC 3339 UTC)."""

    created: str
    modified: str
    transfer_completed: Optional[str]


class Waiting(TypedDict, total=False):
    """Why a queued or transient-error job is not moving (``reason``, and ``until`` or
    ``ahead`` where they apply)."""

    reason: str
    until: str
    ahead: int


class ErrorInfo(TypedDict):
    """Error info of a job in ``error`` or ``transient_error`` (``job.get_error``,
    ``callback.job_error``)."""

    context: str
    code: str
    http_status: Optional[int]
    transient: bool
    description: str
    file_index: Optional[int]
    protocol: Optional[str]


class Job(TypedDict):
    """A job as ``job.get``, ``job.list`` and every callback report it."""

    job_id: str
    display_name: str
    description: str
    type: JobType
    owner_uid: int
    priority: Priority
    state: JobState
    progress: Progress
    times: JobTimes
    error: Optional[ErrorInfo]
    error_count: int
    waiting: Optional[Waiting]
    notify_flags: int
    notify_interface: bool
    notify_handler: Optional[str]
    notify_cmdline: Optional[List[str]]
    minimum_retry_delay_s: int
    no_progress_timeout_s: int
    max_download_time_s: int
    minimum_notification_interval_ms: int
    custom_headers: List[str]
    bandwidth_limit_bps: Optional[int]
    max_parallel_files: int
    credentials_set: bool
    proxy: Optional[str]
    allow_https_to_http: bool
    peer_caching: bool


class _FileAdditions(TypedDict, total=False):
    # Additions to protocol 1 that older daemons omit.
    bytes_from_origin: int
    # Upload jobs only, once known: "bits" or "tus".
    upload_protocol: str


class File(_FileAdditions):
    """A file as ``job.files`` and the file callbacks report it (``bytes_from_origin`` is an
    addition older daemons omit)."""

    file_index: int
    remote_url: str
    local_path: str
    bytes_total: Optional[int]
    bytes_transferred: int
    transferred: bool
    completed: bool
    ranges: Optional[List[FileRange]]
    sha256: Optional[str]
    validation: Validation
    from_peer: bool
    bytes_from_peers: int
    temporary_path: Optional[str]


class _EventRequired(TypedDict):
    seq: int
    time: str
    job_id: str
    kind: str


# ``from`` is a keyword, so the optional fields are declared in the functional form.
_EventOptional = TypedDict(
    "_EventOptional",
    {
        "from": str,
        "to": str,
        "bytes_transferred": int,
        "bytes_total": Optional[int],
        "file_index": int,
        "fields": List[str],
        "error": ErrorInfo,
        "callback": str,
        "target": str,
        "outcome": str,
        "attempt": int,
        "detail": str,
        "action": str,
        "key": str,
        "peer": str,
        "bytes": int,
        "waited_ms": int,
    },
    total=False,
)


class Event(_EventRequired, _EventOptional):
    """One entry of the durable event log. ``kind`` decides which other keys are there
    (``state``: ``from``, ``to``; ``progress``: ``bytes_transferred``, ``bytes_total``;
    ``file_transferred``: ``file_index``; ``modified``: ``fields``; ``error``: ``error``;
    ``notification``: ``callback``, ``target``, ``outcome``, ``attempt``, ``detail``;
    ``peer_cache``: ``action``, ``file_index``, ``key``, ``peer``, ``bytes``, ``waited_ms``,
    ``detail``). Kinds this version does not know may appear and should be skipped."""


class Credentials(TypedDict):
    """HTTP credentials for ``job.set`` (write-only; reads show ``credentials_set``)."""

    scheme: str
    user: str
    password: str


class SetChanges(TypedDict, total=False):
    """The properties ``job.set`` may change, as keyword arguments of ``job_set``: what is not
    given stays as it is, and ``None`` clears a nullable property (the wire's ``null``)."""

    display_name: str
    description: str
    priority: Priority
    notify_flags: int
    notify_cmdline: Optional[List[str]]
    notify_handler: Optional[str]
    minimum_retry_delay_s: int
    no_progress_timeout_s: int
    max_download_time_s: Optional[int]
    minimum_notification_interval_ms: int
    custom_headers: List[str]
    bandwidth_limit_bps: Optional[int]
    max_parallel_files: int
    credentials: Optional[Credentials]
    proxy: Optional[str]
    allow_https_to_http: bool
    peer_caching: bool


class HelloResult(TypedDict):
    """``ferry.hello``: protocol version, server name, the caller's uid and the daemon's mode."""

    protocol: int
    server: str
    uid: int
    mode: str


class CreateResult(TypedDict):
    """``job.create``: the new job's id (it starts ``suspended``)."""

    job_id: str


class AddFilesResult(TypedDict):
    """``job.add_files``: index of the first file added and how many were added."""

    first_index: int
    count: int


class _FilesRequired(TypedDict):
    files: List[File]


class FilesResult(_FilesRequired, total=False):
    """``job.files``: files in index order; ``next`` is the ``from`` of the next page."""

    next: int


class ListResult(TypedDict):
    """``job.list``: one page of jobs and the cursor of the next (``None`` at the end)."""

    jobs: List[Job]
    next: Optional[str]


class StateResult(TypedDict):
    """``job.resume``, ``job.suspend``, ``job.cancel``: the job's state after the call."""

    state: JobState


class CompleteResult(TypedDict):
    """``job.complete``: the state after the call, and whether untransferred files were dropped."""

    state: JobState
    partial: bool


class HandlerInfo(TypedDict):
    """A registered handler."""

    name: str
    argv: List[str]
    activation_timeout_s: int


class HandlerListResult(TypedDict):
    """``handler.list``: the caller's handlers."""

    handlers: List[HandlerInfo]


class HandlerAttachResult(TypedDict):
    """``handler.attach``: the jobs this connection now serves."""

    jobs: List[str]


class EventsReadResult(TypedDict):
    """``events.read``: events in ``seq`` order and the cursor to pass as the next ``after``."""

    events: List[Event]
    next: int


class Empty(TypedDict):
    """``{}``: the result of methods that only acknowledge."""
