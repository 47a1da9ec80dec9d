#!/usr/bin/env python3
"""``updater.py URL DEST_DIR``: download in the background, then let ferryd wake us up to finish.

The first run registers this program as the handler ``ferry-example-updater-py``, creates a job
that names it, prints the job id and exits. When the file has arrived (or the job failed),
ferryd starts the program again with ``FERRY_ACTIVATION`` set; it then validates each file,
completes the job (or cancels it on error) and exits once idle. A handler runs without a
terminal, so what it does is also appended to ``DEST_DIR/ferry-example-updater-py.log``.
"""

from __future__ import annotations

import os
import sys
from typing import List
from urllib.parse import urlsplit

import ferry_client
from ferry_client.types import ErrorInfo, File, Job

HANDLER = "ferry-example-updater-py"


class Updater(ferry_client.Handler):
    """What the handler does with each notification."""

    def file_transferred(self, job: Job, file: File) -> None:
        # ferryd already checked `sha256` when the job had one; this is the application's own
        # check of the staged content (here: it is not empty).
        staged = file["temporary_path"] or file["local_path"]
        valid = os.path.isfile(staged) and os.path.getsize(staged) > 0
        self.client.file_set_validation_state(job["job_id"], file["file_index"], valid)
        log(file["local_path"], f"job {job['job_id']}: file {file['file_index']} valid: {valid}")

    def job_transferred(self, job: Job) -> None:
        self.client.job_complete(job["job_id"])
        for f in self.client.job_files(job["job_id"])["files"]:
            log(f["local_path"], f"job {job['job_id']}: delivered {f['local_path']}")

    def job_error(self, job: Job, error: ErrorInfo) -> None:
        files = self.client.job_files(job["job_id"])["files"]
        if files:
            log(files[0]["local_path"], f"job {job['job_id']} failed: {error['description']} ({error['code']}); cancelling")
        self.client.job_cancel(job["job_id"])


def log(path: str, line: str) -> None:
    """Writes a line to stderr and appends it to the log next to ``path``."""
    print(line, file=sys.stderr)
    try:
        with open(os.path.join(os.path.dirname(path), f"{HANDLER}.log"), "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError:
        pass


def main(argv: List[str]) -> int:
    """Serves an activation, or starts a download."""
    if ferry_client.activated():
        # Started by ferryd: serve the notifications that are due, then exit.
        ferry_client.serve_handler(Updater())
        return 0
    if len(argv) != 2:
        print("usage: updater.py URL DEST_DIR", file=sys.stderr)
        return 2
    url, dest_dir = argv
    # ferryd wants absolute paths: for the handler program and for the destination.
    dest_dir = os.path.realpath(dest_dir)
    name = os.path.basename(urlsplit(url).path) or "download"
    with ferry_client.Client() as client:
        client.handler_register(HANDLER, [sys.executable, os.path.abspath(__file__)])
        job_id = client.job_create(
            f"{HANDLER}: {name}",
            files=[{"remote_url": url, "local_path": os.path.join(dest_dir, name)}],
        )
        flags = ferry_client.NOTIFY_JOB_TRANSFERRED | ferry_client.NOTIFY_JOB_ERROR | ferry_client.NOTIFY_FILE_TRANSFERRED
        client.job_set(job_id, notify_handler=HANDLER, notify_flags=flags)
        client.job_resume(job_id)
    print(job_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
