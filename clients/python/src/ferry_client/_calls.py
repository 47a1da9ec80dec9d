"""Building params the way the Rust client does (absent optional params are omitted, ``job.set``
keeps ``None`` as ``null``), shared by the sync and the asyncio client."""

from __future__ import annotations

import enum
from typing import Any, Dict, List, Sequence, Tuple

from .types import FileSpec, Params

#: Encoded bytes of file specs per ``job.create``/``job.add_files`` request, well under the
#: protocol's 1 MiB line limit (the Rust client's figure).
FILES_BYTES_PER_REQUEST = 512 * 1024


class Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "unset"

    def __repr__(self) -> str:
        return "UNSET"


#: "Leave this property as it is" in ``job_set``, where ``None`` means ``null`` (clear it).
UNSET = Unset.UNSET


def present(**params: Any) -> Params:
    """The params that were given: ``None`` is the same as absent, so it is left out."""
    return {k: v for k, v in params.items() if v is not None}


def changed(**params: Any) -> Params:
    """``job.set``'s params: what is not :data:`UNSET`, with ``None`` kept as ``null``."""
    return {k: v for k, v in params.items() if v is not UNSET}


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


def create_plan(params: Params) -> Tuple[Params, List[List[FileSpec]]]:
    """Splits ``job.create`` params: the create (with the first batch of files) and the batches
    that follow through ``job.add_files``."""
    files = params.pop("files", None) or []
    parts = batches(files)
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
