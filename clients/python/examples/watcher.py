#!/usr/bin/env python3
"""``watcher.py JOB_ID``: print every callback and event of a job until it is final (asyncio).

The watcher becomes the job's live callback (``job.set_notify_interface``) with a handler whose
methods are coroutines, and follows the job's events; ``job_transferred`` completes the job, so
the watcher also finishes what it watches. It exits once the job is acknowledged or cancelled.
"""

from __future__ import annotations

import asyncio
import sys
from typing import List

from ferry_client import Handler
from ferry_client.aio import AsyncClient
from ferry_client.types import ErrorInfo, File, Job

FINAL = ("acknowledged", "cancelled")


class Printer(Handler):
    """Prints each callback; completes the job when it has transferred."""

    async def job_transferred(self, job: Job) -> None:
        print(f"callback: job {job['job_id']} transferred; completing it", flush=True)
        await self.aclient.job_complete(job["job_id"])

    async def job_error(self, job: Job, error: ErrorInfo) -> None:
        print(f"callback: job {job['job_id']} failed: {error['description']}", flush=True)

    async def file_transferred(self, job: Job, file: File) -> None:
        print(f"callback: file {file['file_index']} of job {job['job_id']} transferred", flush=True)


async def watch(job_id: str) -> int:
    """Watches ``job_id`` until it is final."""
    async with AsyncClient() as client:
        job = await client.job_get(job_id)
        if job["state"] in FINAL:
            print(f"job {job_id} is already {job['state']}")
            return 0
        await client.set_notify_interface(job_id, Printer())
        async for event in client.events_follow(after=0, job_id=job_id):
            print(f"event {event['seq']}: {event['kind']} {dict(event)}", flush=True)
            if event["kind"] == "state" and event.get("to") in FINAL:
                return 0
    return 1


def main(argv: List[str]) -> int:
    """Entry point."""
    if len(argv) != 1:
        print("usage: watcher.py JOB_ID", file=sys.stderr)
        return 2
    return asyncio.run(watch(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
