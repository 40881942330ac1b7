"""The server's side of masking: each running job's masks, sealed in the store and cached here.

Every append is masked before it is stored (`logstream.masking` does the masking; this module
keeps the state). A job's masks are the values declared when it was created (`"mask"`) and
those its `::add-mask::` lines added, plus whether a private-key block is open. They are kept:

- in the store, in `job_masks`, so every instance on the same PostgreSQL (or every worker on
  one SQLite file) masks with the same values. The masking needs the values themselves (a hash
  cannot mask), so each is *sealed*: encrypted with a key derived from a token the server does
  not store (the job's write token, and the runner token when one is configured, each its own
  row), so the database alone, its files or a backup of them never show a secret. The rows are
  deleted when the job finishes (`queries.erase_masks`, in the finish's transaction).
- in this process, as a `Masker` per job, so an append costs no query: `jobs.mask_version`
  moves with every change, the append checks it under the job's lock (it reads that row
  anyway), and an append masked with an older version is masked again and retried.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from logstream.masking import Masker, MaskError, pattern_names
from logstream.server.errors import Forbidden, NotFound
from logstream.server.store import queries
from logstream.server.writer import MaskChange

CACHE_SIZE = 10_000
KEY_JOB = "job"
KEY_RUNNER = "runner"
_NONCE = 16
_TAG = 16


def mask_key(token: str) -> bytes:
    """The sealing key of a token (not its stored hash: another domain of SHA-256)."""
    return hashlib.sha256(b"logstream mask key\0" + token.encode("utf-8")).digest()


def seal(key: bytes, value: str) -> str:
    """Encrypt and authenticate `value`: SHAKE-256 keystream (key, random nonce), HMAC tag."""
    nonce = secrets.token_bytes(_NONCE)
    data = value.encode("utf-8")
    stream = hashlib.shake_256(key + nonce).digest(len(data))
    cipher = (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data))
    tag = hmac.new(key, nonce + cipher, hashlib.sha256).digest()[:_TAG]
    return base64.b64encode(nonce + cipher + tag).decode("ascii")


def unseal(key: bytes, sealed: str) -> str | None:
    """The value `seal` sealed with `key`, or None for another key or altered data."""
    try:
        raw = base64.b64decode(sealed, validate=True)
    except ValueError:
        return None
    nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    expected = hmac.new(key, nonce + cipher, hashlib.sha256).digest()[:_TAG]
    if len(raw) < _NONCE + _TAG or not hmac.compare_digest(tag, expected):
        return None
    stream = hashlib.shake_256(key + nonce).digest(len(cipher))
    data = (int.from_bytes(cipher, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(cipher))
    return data.decode("utf-8")


@dataclasses.dataclass(frozen=True)
class JobMasks:
    """A job's masks as one process knows them: the store's version and the Masker."""

    version: int
    masker: Masker


class MaskCache:
    """Each job's masks, read from the store once per process and kept up to date."""

    def __init__(self, engine: AsyncEngine, patterns: str, runner_token: str | None) -> None:
        try:
            self.patterns = pattern_names(patterns)
        except MaskError as error:
            from logstream.config import SettingsError

            raise SettingsError(f"LOGSTREAM_MASK_PATTERNS: {error}") from None
        self.plain = Masker((), self.patterns)  # the patterns alone (names, meta)
        self._engine = engine
        self._runner_token = runner_token
        self._jobs: dict[int, JobMasks] = {}

    def _key_name(self, token: str) -> str:
        runner = self._runner_token
        if runner is not None and hmac.compare_digest(token.encode(), runner.encode()):
            return KEY_RUNNER
        return KEY_JOB

    def seal_all(self, values: Sequence[str], token: str) -> list[dict[str, str]]:
        """`values` sealed for the request's token and the runner token (one row each)."""
        tokens = {self._key_name(token): token}
        if self._runner_token is not None:
            tokens[KEY_RUNNER] = self._runner_token
        keys = {name: mask_key(value) for name, value in tokens.items()}
        return [{name: seal(key, value) for name, key in keys.items()} for value in values]

    def created(self, job_id: int, values: Sequence[str]) -> None:
        """A job this process just created with `values` (its store version is 1 with them)."""
        self._put(job_id, JobMasks(1 if values else 0, Masker(values, self.patterns)))

    async def get(self, job_id: int, token: str) -> JobMasks:
        """The job's masks; from the store the first time (unsealed with the request's token)."""
        cached = self._jobs.get(job_id)
        if cached is not None:
            return cached
        async with self._engine.connect() as conn:
            stored = await queries.read_masks(conn, job_id)
        if stored is None:
            raise NotFound(f"job {job_id} does not exist", job_id=job_id)
        name = self._key_name(token)
        key = mask_key(token)
        values: list[str] = []
        for seq in sorted(stored.sealed):
            sealed = stored.sealed[seq].get(name)
            value = None if sealed is None else unseal(key, sealed)
            if value is None:
                # Fail closed: without the value its secret would be stored in clear.
                raise Forbidden(
                    f"job {job_id} masks values this token cannot unseal; append with the"
                    " token its masks were given with (the job's own token)",
                    job_id=job_id,
                )
            values.append(value)
        found = JobMasks(stored.version, Masker(values, self.patterns, in_key=stored.block))
        self._put(job_id, found)
        return found

    def change(self, before: JobMasks, after: Masker, token: str) -> MaskChange:
        """What an append masked with `before`, ending in state `after`, adds to the store."""
        if after is before.masker:
            return MaskChange(before.version, mask=after.mask)
        added = sorted(after.values - before.masker.values)
        block = after.in_key if after.in_key != before.masker.in_key else None
        return MaskChange(before.version, self.seal_all(added, token), block, after.mask)

    def committed(self, job_id: int, change: MaskChange, after: Masker) -> None:
        """An append with `change` is stored; the job's masks are now `after`."""
        if change.changes:
            self._put(job_id, JobMasks(change.version + 1, after))

    def forget(self, job_id: int) -> None:
        """Drop what this process knows of a job's masks (stale, or the job finished)."""
        self._jobs.pop(job_id, None)

    def _put(self, job_id: int, masks: JobMasks) -> None:
        if len(self._jobs) >= CACHE_SIZE:
            self._jobs.clear()
        self._jobs[job_id] = masks
