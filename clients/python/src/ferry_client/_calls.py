"""What the sync and the asyncio client share: building params the way the Rust client does
(absent optional params are omitted; ``job.set`` keeps ``None`` as ``null``), batching files
under the line limit, and a follower's resume state."""

from __future__ import annotations

import time
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from .errors import Disconnected
from .types import Event, EventsReadResult, FileSpec, JobState, Params

#: Encoded bytes of file specs per ``job.create``/``job.add_files`` request, well under the
#: protocol's 1 MiB line limit (the Rust client's figure).
FILES_BYTES_PER_REQUEST = 512 * 1024


def present(**params: Any) -> Params:
    """The params that were given: ``None`` is the same as absent, so it is left out."""
    return {k: v for k, v in params.items() if v is not None}


def _spec_size(spec: FileSpec) -> int:
    # URL + path + JSON punctuation; ranges add a little more each (as the Rust client counts).
    return (
        len(spec["remote_url"].encode())
        + len(spec["local_path"].encode())
        + len(spec.get("sha256", "").encode())
        + len(spec.get("ranges", [])) * 48
        + 64
    )


def batches(files: Sequence[FileSpec]) -> List[List[FileSpec]]:
    """``files`` cut into batches that each fit one request (at least one spec per batch)."""
    out: List[List[FileSpec]] = []
    current: List[FileSpec] = []
    size = 0
    for spec in files:
        n = _spec_size(spec)
        if current and size + n > FILES_BYTES_PER_REQUEST:
            out.append(current)
            current, size = [], 0
        current.append(spec)
        size += n
    if current:
        out.append(current)
    return out


def create_plan(
    display_name: str,
    type: Optional[str],
    priority: Optional[str],
    description: Optional[str],
    files: Optional[Sequence[FileSpec]],
) -> Tuple[Params, List[List[FileSpec]]]:
    """``job.create``'s params (with the first batch of files) and the batches that follow
    through ``job.add_files``."""
    params = present(display_name=display_name, type=type, priority=priority, description=description)
    parts = batches(files or [])
    if parts:
        params["files"] = parts[0]
    return params, parts[1:]


def request(call_id: int, method: str, params: Params) -> Dict[str, Any]:
    """A request object."""
    return {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}


def reply(call_id: Any, result: Any = None, error: Any = None) -> Dict[str, Any]:
    """A response object: ``error`` when given, else ``result``."""
    if error is not None:
        return {"jsonrpc": "2.0", "id": call_id, "error": error}
    return {"jsonrpc": "2.0", "id": call_id, "result": result}


#: ``events.read`` page size used to find the newest event (the daemon's maximum).
EVENTS_PAGE = 10_000


def after_page(page: EventsReadResult, cursor: int) -> Optional[int]:
    """The cursor after one ``events.read`` page while looking for the newest event, or
    ``None`` once ``cursor`` is the newest."""
    if not page["events"] or page["next"] <= cursor:
        return None
    return page["next"]


class Resume:
    """A follower's state across reconnections: the last ``seq`` it yielded (so a new
    connection replays from there and nothing is yielded twice) and since when the daemon has
    been gone."""

    def __init__(self, path: str, cursor: int, reconnect_timeout: float) -> None:
        self.path = path
        self.cursor = cursor
        self.reconnect_timeout = reconnect_timeout
        self.deadline: Optional[float] = None

    def follow_params(self, job_id: Optional[str]) -> Params:
        """``events.follow``'s params for the next connection."""
        return present(after=self.cursor, job_id=job_id)

    def connected(self) -> None:
        """The daemon answered: the reconnect clock stops."""
        self.deadline = None

    def fresh(self, event: Event) -> bool:
        """Whether ``event`` is new (and then it becomes the cursor)."""
        if event["seq"] <= self.cursor:
            return False
        self.cursor = event["seq"]
        return True

    def gone(self) -> float:
        """Seconds to wait before the next connection attempt; raises :class:`Disconnected`
        once the daemon has been gone for ``reconnect_timeout``."""
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.reconnect_timeout
        if now >= self.deadline:
            raise Disconnected(
                f"ferryd at {self.path} did not come back within {self.reconnect_timeout} s; "
                f"events after seq {self.cursor} were not read"
            )
        return 0.1


#: The states :meth:`ferry_client.Client.wait_for` waits for by default: the daemon leaves none of them by
#: itself (``suspended`` is not one: every job starts there).
SETTLED: FrozenSet[JobState] = frozenset({"transferred", "error", "acknowledged", "cancelled"})


def wait_timeout(job_id: str, wanted: FrozenSet[JobState], timeout: Optional[float]) -> str:
    """The message of the :class:`~ferry_client.CallTimeout` a ``wait_for`` raises."""
    return (
        f"job {job_id} did not reach {' or '.join(sorted(wanted))} within {timeout} s; it may still be queued "
        "or retrying, or waiting for you (a new job stays suspended until resumed). Wait longer, or act on the job"
    )
