"""No secret leaks: the corpus (tests/support/secrets_corpus.py, 1,150 cases) sent through the
API and through `logstream run`, then looked for in every way a secret could come back out:
the SSE stream, the raw text, /lines, search, the events stream, the server's log, and the
bytes of the database (SQLite main file and WAL; PostgreSQL by a query over every table)."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import httpx
import pytest
from support.cli import cli, job_id_from
from support.secrets_corpus import Case, build, visible
from support.server import ServerProcess

CASES = build()
GROUP = 50  # cases per job through the API


def test_the_corpus_is_large_and_leaks_without_masking() -> None:
    assert len(CASES) >= 1000
    for case in CASES:
        sent = "\n".join(case.lines)
        assert any(n in sent or n in visible(sent) for n in case.needles), case


def _groups(cases: Sequence[Case]) -> list[list[Case]]:
    return [list(cases[i : i + GROUP]) for i in range(0, len(cases), GROUP)]


def send_api(
    urls: Sequence[str], cases: Sequence[Case], runner_token: str | None = None
) -> dict[int, str]:
    """One job per group of cases, declaring the group's values; appends go round `urls`
    (several instances), in three forms: one line per request, a text/plain chunk, a JSON list.
    Returns {job id: token}."""
    jobs: dict[int, str] = {}
    turn = 0
    with httpx.Client(timeout=30) as http:
        for group in _groups(cases):
            declared = [value for case in group for value in case.declared]
            first = next((v for v in declared if "\n" not in v), "none")
            headers = {"Authorization": f"Bearer {runner_token}"} if runner_token else {}
            body = {"name": f"deploy {first}", "meta": {"env": {"X": first}}, "mask": declared}
            answer = http.post(f"{urls[0]}/api/jobs", json=body, headers=headers)
            assert answer.status_code == 201, answer.text
            assert all(value not in answer.text for value in declared)
            job = answer.json()
            tokens = [job["token"], runner_token or job["token"]]
            for index, case in enumerate(group):
                url = urls[turn % len(urls)]
                auth = {"Authorization": f"Bearer {tokens[turn % 2]}"}
                turn += 1
                target = f"{url}/api/jobs/{job['id']}/lines"
                if index % 3 == 0:
                    for line in case.lines:
                        answer = http.post(target, json={"lines": [line]}, headers=auth)
                        assert answer.status_code == 200, answer.text
                elif index % 3 == 1:
                    data = "\n".join(case.lines).encode() + b"\n"
                    answer = http.post(
                        target, content=data, headers={**auth, "Content-Type": "text/plain"}
                    )
                    assert answer.status_code == 200, answer.text
                else:
                    answer = http.post(target, json={"lines": case.lines}, headers=auth)
                    assert answer.status_code == 200, answer.text
            jobs[job["id"]] = job["token"]
    return jobs


def finish(url: str, tokens: dict[int, str]) -> None:
    for job_id in tokens:
        answer = httpx.post(
            f"{url}/api/jobs/{job_id}/finish",
            json={"status": "succeeded", "exit_code": 0},
            headers={"Authorization": f"Bearer {tokens[job_id]}"},
        )
        assert answer.status_code == 200, answer.text


def surfaces(url: str, job_ids: Sequence[int]) -> dict[str, str]:
    """Everything a reader can get out of the server about these (finished) jobs."""
    found: dict[str, list[str]] = {"sse": [], "text": [], "lines": [], "jobs": [], "events": []}
    with httpx.Client(base_url=url, timeout=30) as http:
        for job_id in job_ids:
            found["sse"].append(http.get(f"/api/jobs/{job_id}/log?format=sse").text)
            found["text"].append(http.get(f"/api/jobs/{job_id}/log?format=text").text)
            found["lines"].append(http.get(f"/api/jobs/{job_id}/lines?limit=10000").text)
            found["jobs"].append(http.get(f"/api/jobs/{job_id}").text)
        found["jobs"].append(http.get("/api/jobs?limit=500").text)
        wanted = 2 * len(job_ids)
        seen = 0
        deadline = time.monotonic() + 10
        with http.stream("GET", "/api/events?after=0", timeout=5) as stream:
            for line in stream.iter_lines():
                found["events"].append(line)
                seen += line.startswith("event: job")
                if seen >= wanted or time.monotonic() > deadline:
                    break
        assert seen >= wanted
    joined = {name: "\n".join(parts) for name, parts in found.items()}
    # An SSE data field per CR segment: join them back, so a secret after a CR is whole.
    joined["sse"] = joined["sse"].replace("\ndata: ", "")
    return joined


def assert_no_leak(cases: Sequence[Case], texts: dict[str, str]) -> None:
    leaks = []
    for name, text in texts.items():
        shown = visible(text)
        for case in cases:
            for needle in case.needles:
                for form in {needle, json.dumps(needle)[1:-1]}:
                    if form in text or form in shown:
                        leaks.append((name, case.kind, needle))
    assert not leaks, f"{len(leaks)} leaks, e.g. {leaks[:5]}"


def assert_search_finds_nothing(url: str, cases_by_job: dict[int, Sequence[Case]]) -> None:
    hits = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for job_id, cases in cases_by_job.items():
            for case in cases:
                for needle in case.needles:
                    query = needle.strip()[:1000]
                    answer = http.get(f"/api/jobs/{job_id}/search", params={"q": query})
                    assert answer.status_code == 200, answer.text
                    if answer.json()["count"]:
                        hits.append((case.kind, needle))
    assert not hits, f"search found {len(hits)} secrets, e.g. {hits[:5]}"


def assert_not_in_files(cases: Sequence[Case], paths: Iterable[Path]) -> None:
    blobs = {path.name: path.read_bytes() for path in paths if path.exists()}
    assert blobs
    leaks = []
    for name, blob in blobs.items():
        for case in cases:
            for needle in [*case.needles, *case.declared]:
                for part in needle.split("\n"):
                    if len(part) >= 6 and part.encode() in blob:
                        leaks.append((name, case.kind, part))
    assert not leaks, f"{len(leaks)} secrets in the database files, e.g. {leaks[:5]}"


def _db_files(workdir: Path) -> list[Path]:
    return [workdir / "logstream.db", workdir / "logstream.db-wal"]


def test_the_corpus_through_the_api_leaks_nowhere(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        jobs = send_api([server.url], CASES)
        job_ids = list(jobs)
        # While the jobs run, their masks are in the store (sealed): not in the files either.
        assert_not_in_files(CASES, _db_files(tmp_path))
        finish(server.url, jobs)
        assert_no_leak(CASES, surfaces(server.url, job_ids))
        assert_search_finds_nothing(server.url, dict(zip(job_ids, _groups(CASES), strict=True)))
        assert_not_in_files(CASES, _db_files(tmp_path))
        assert_no_leak(CASES, {"server log": server.logs()})
    finally:
        server.stop(signal.SIGKILL)


WRITER = r"""
import json, sys, time
cases = json.load(open(sys.argv[1]))
out = sys.stdout
for case in cases:
    lines = case["lines"]
    if case["split"] is not None:
        first, cut = lines[0], case["split"]
        out.write(first[:cut]); out.flush()
        time.sleep(0.8 if case["pause"] else 0.02)
        out.write(first[cut:] + "\n"); out.flush()
        lines = lines[1:]
    for line in lines:
        out.write(line + "\n")
    out.flush()
"""


def test_the_corpus_through_logstream_run_is_masked_on_the_runner(tmp_path: Path) -> None:
    """The server masks nothing here (no declared values reach it, its patterns are off): every
    secret is masked by the runner before it is sent."""
    server = ServerProcess(tmp_path, env={"LOGSTREAM_MASK_PATTERNS": "none"})
    server.start()
    try:
        corpus = tmp_path / "corpus.json"
        corpus.write_text(json.dumps([case.__dict__ for case in CASES]))
        script = tmp_path / "writer.py"
        script.write_text(WRITER)
        env: dict[str, str] = {}
        named: list[str] = []
        for i, case in enumerate(CASES):
            for j, value in enumerate(case.declared):
                if i % 2:
                    env[f"CASE{i}_{j}_TOKEN"] = value  # found by the default *_TOKEN
                else:
                    env[f"CASE{i}_{j}_VALUE"] = value
                    named += ["--mask-env", f"CASE{i}_{j}_VALUE"]
        first = CASES[0].declared[0]
        result = cli(
            server.url,
            "run",
            "--name",
            f"deploy {first}",
            *named,
            "--",
            sys.executable,
            str(script),
            str(corpus),
            first,
            timeout=120,
            **env,
        )
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        job_id = job_id_from(result.stderr)
        texts = surfaces(server.url, [job_id])
        # A paused split line goes out in two parts (the text before the secret's start, then
        # the rest); on a loaded machine a pause can fall inside the release wait.
        lines = texts["lines"].count('"n":')
        assert sum(map(len, (c.lines for c in CASES))) < lines <= 1580 + 4
        assert_no_leak(CASES, texts)
        assert_no_leak(CASES, {"stderr": result.stderr.decode()})
        assert_search_finds_nothing(server.url, {job_id: CASES})
        assert_not_in_files(CASES, _db_files(tmp_path))
    finally:
        server.stop(signal.SIGKILL)


@pytest.mark.postgres
def test_the_corpus_through_two_instances_on_postgres_leaks_nowhere(
    tmp_path: Path, pg_url: str
) -> None:
    """Appends go round two instances (add-mask through one, its value through the other) and
    two tokens (the job's, the runner's); then every table is read back by a query."""
    import asyncio

    import asyncpg

    runner = "runner-token-for-the-test"
    env = {"LOGSTREAM_RUNNER_TOKEN": runner}
    servers = [ServerProcess(tmp_path / name, database_url=pg_url, env=env) for name in "ab"]
    for server in servers:
        server.workdir.mkdir()
        server.start()
    try:
        jobs = send_api([s.url for s in servers], CASES, runner_token=runner)
        job_ids = list(jobs)

        async def dump() -> str:
            conn = await asyncpg.connect(pg_url)
            try:
                rows = await conn.fetch("SELECT text FROM lines")
                rows += await conn.fetch("SELECT name || meta FROM jobs")
                rows += await conn.fetch("SELECT sealed FROM job_masks")
            finally:
                await conn.close()
            return "\n".join(row[0] for row in rows)

        running = asyncio.run(dump())
        assert "sealed" not in running
        finish(servers[1].url, jobs)
        texts = surfaces(servers[0].url, job_ids)
        texts["postgres while running"] = running
        texts["postgres"] = asyncio.run(dump())
        assert_no_leak(CASES, texts)
        assert_search_finds_nothing(servers[1].url, dict(zip(job_ids, _groups(CASES), strict=True)))
        for server in servers:
            assert_no_leak(CASES, {"server log": server.logs()})
    finally:
        for server in servers:
            server.stop(signal.SIGKILL)


def test_short_or_malformed_mask_values_are_refused_without_being_shown(
    shared_server: ServerProcess,
) -> None:
    for mask, field in ((["abc"], "mask"), ("s3cr3t-value", "mask"), ([12345678], "mask")):
        answer = httpx.post(f"{shared_server.url}/api/jobs", json={"name": "x", "mask": mask})
        assert answer.status_code == 400
        assert answer.json()["field"] == field
        assert "abc" not in answer.json()["message"].split()
        assert "s3cr3t-value" not in answer.text
    answer = httpx.post(f"{shared_server.url}/api/jobs", json={"name": "x", "mask": ["abc"]})
    assert "shorter than 6 characters" in answer.json()["message"]
