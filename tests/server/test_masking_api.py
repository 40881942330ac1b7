"""Masking through the API: declared values, add-mask across requests and instances, retries."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.server import ServerProcess

SECRET = "s3cr3t-value"


def _create(url: str, **body: Any) -> dict[str, Any]:
    answer = httpx.post(f"{url}/api/jobs", json={"name": "masked", **body})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _append(url: str, job: dict[str, Any], lines: list[str], **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/api/jobs/{job['id']}/lines",
        json={"lines": lines, **extra},
        headers={"Authorization": f"Bearer {job['token']}"},
    )


def _texts(url: str, job: dict[str, Any]) -> list[str]:
    page = httpx.get(f"{url}/api/jobs/{job['id']}/lines").json()
    return [line["text"] for line in page["lines"]]


def test_declared_values_are_masked_in_lines_name_and_meta(shared_server: ServerProcess) -> None:
    url = shared_server.url
    job = _create(url, name=f"deploy {SECRET}", meta={"k": SECRET}, mask=[SECRET])
    assert SECRET not in str(job)
    assert job["name"] == "deploy ***" and job["meta"] == {"k": "***"}
    assert _append(url, job, [f"x {SECRET} y"]).status_code == 200
    assert _texts(url, job) == ["x *** y"]


def test_add_mask_holds_across_requests_and_a_retry_still_matches(
    shared_server: ServerProcess,
) -> None:
    url = shared_server.url
    job = _create(url)
    batch = [f"early {SECRET}", f"::add-mask::{SECRET}", f"late {SECRET}"]
    assert _append(url, job, batch).json()["stored"] == 3
    # The same batch again (a retry after a lost answer): the first line is stored in clear
    # (it came before the add-mask) and now masks differently, yet it is the same line.
    again = _append(url, job, batch, first=1).json()
    assert (again["stored"], again["skipped"]) == (0, 3)
    assert _append(url, job, [f"next {SECRET}"]).status_code == 200
    assert _texts(url, job) == [f"early {SECRET}", "::add-mask::***", "late ***", "next ***"]


def test_a_finished_job_forgets_its_masks(shared_server: ServerProcess) -> None:
    url = shared_server.url
    job = _create(url, mask=[SECRET])
    headers = {"Authorization": f"Bearer {job['token']}"}
    answer = httpx.post(
        f"{url}/api/jobs/{job['id']}/finish", json={"status": "succeeded"}, headers=headers
    )
    assert answer.status_code == 200
    with sqlite3.connect(shared_server.workdir / "logstream.db") as db:
        rows = db.execute("SELECT count(*) FROM job_masks WHERE job_id = ?", (job["id"],))
        assert rows.fetchone() == (0,)


@pytest.mark.postgres
def test_an_add_mask_through_one_instance_masks_on_another(tmp_path: Path, pg_url: str) -> None:
    servers = [ServerProcess(tmp_path / name, database_url=pg_url) for name in "ab"]
    for server in servers:
        server.workdir.mkdir()
        server.start()
    try:
        a, b = (server.url for server in servers)
        job = _create(a)
        assert _append(b, job, ["b has the job's masks cached now"]).status_code == 200
        assert _append(a, job, [f"::add-mask::{SECRET}"]).status_code == 200
        assert _append(b, job, [f"on b: {SECRET}"]).status_code == 200
        declared = _create(a, mask=[SECRET])
        assert _append(b, declared, [f"declared on a, sent to b: {SECRET}"]).status_code == 200
        assert _texts(a, job)[1:] == ["::add-mask::***", "on b: ***"]
        assert _texts(b, declared) == ["declared on a, sent to b: ***"]
    finally:
        for server in servers:
            server.stop(signal.SIGKILL)
