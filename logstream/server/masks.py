"""The server's side of masking: each running job's masks, sealed in the store and cached here.

Every append is masked before it is stored (`logstream.masking` does the masking; this module
keeps the state). A job's masks are the values declared when it was created (`"mask"`) and
those its `::add-mask::` lines added, plus whether a private-key block is open. They are kept:

- in the store, in `job_masks`, so every instance on the same PostgreSQL (or every worker on
  one SQLite file) masks with the same values. The masking needs the values themselves (a hash
  cannot mask), so each is *sealed*: encrypted with the job's random data key, which is itself
  stored only sealed with keys derived from tokens the server does not store (the job's write
  token; the runner token, when one is configured), so the database alone, its files or a
  backup of them never show a secret, and a request with either token can read them all.
  The rows are deleted when the job finishes (`queries.erase_masks`, in the finish's
  transaction).
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
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncEngine

from logstream.masking import Masker, MaskError, pattern_names
from logstream.server.errors import Forbidden, NotFound
from logstream.server.store import queries
from logstream.server.writer import MaskChange

CACHE_SIZE = 10_000
KEY_JOB = "job"
KEY_RUNNER = "runner"
_NONCE = 12  # GCM's standard nonce size


def mask_key(token: str) -> bytes:
    """The sealing key of a token (not its stored hash: another domain of SHA-256)."""
    return hashlib.sha256(b"logstream mask key\0" + token.encode("utf-8")).digest()


def seal(key: bytes, value: str) -> str:
    """Encrypt and authenticate `value` (AES-256-GCM from `cryptography`, a random nonce)."""
    nonce = secrets.token_bytes(_NONCE)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, value.encode(), None)).decode()


def unseal(key: bytes, sealed: str) -> str | None:
    """The value `seal` sealed with `key`, or None for another key or altered data."""
    try:
        raw = base64.b64decode(sealed, validate=True)
        return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], None).decode()
    except (ValueError, InvalidTag):
        return None


@dataclasses.dataclass(frozen=True)
class JobMasks:
    """A job's masks as one process knows them: the store's version, the Masker, and the
    job's data key (None for a job created before masking, until its first value)."""

    version: int
    masker: Masker
    data_key: bytes | None


def _forbidden(job_id: int) -> Forbidden:
    # Fail closed: without the values their secrets would be stored in clear.
    return Forbidden(
        f"job {job_id} has masks this token cannot unseal; append with the job's own token",
        job_id=job_id,
    )


class MaskCache:
    """Each job's masks, read from the store once per process and kept up to date."""

    def __init__(self, engine: AsyncEngine, patterns: str, runner_token: str | None) -> None:
        try:
            self.patterns = pattern_names(patterns)
        except MaskError as error:
            from logstream.config import SettingsError

            raise SettingsError(f"LOGSTREAM_MASK_PATTERNS: {error}") from None
        self._engine = engine
        self._runner_token = runner_token
        self._jobs: dict[int, JobMasks] = {}

    def _kind(self, token: str) -> str:
        runner = self._runner_token
        if runner is not None and hmac.compare_digest(token.encode(), runner.encode()):
            return KEY_RUNNER
        return KEY_JOB

    def _seal_key(self, data_key: bytes, token: str) -> dict[str, str]:
        """The data key sealed for the request's token and the runner token."""
        tokens = {self._kind(token): token}
        if self._runner_token is not None:
            tokens[KEY_RUNNER] = self._runner_token
        encoded = base64.b64encode(data_key).decode("ascii")
        return {kind: seal(mask_key(value), encoded) for kind, value in tokens.items()}

    def new_job(self, values: Sequence[str]) -> tuple[bytes, Callable[[str], MaskChange]]:
        """A data key for a job about to be created, and what the writer stores with it."""
        data_key = secrets.token_bytes(32)

        def sealed(token: str) -> MaskChange:
            return MaskChange(
                0, [seal(data_key, value) for value in values], self._seal_key(data_key, token)
            )

        return data_key, sealed

    def created(self, job_id: int, values: Sequence[str], data_key: bytes) -> None:
        """A job this process just created with `values` (its store version is 1 with them)."""
        masker = Masker(values, self.patterns)
        self._put(job_id, JobMasks(1 if values else 0, masker, data_key))

    async def get(self, job_id: int, token: str) -> JobMasks:
        """The job's masks; from the store the first time (unsealed with the request's token)."""
        cached = self._jobs.get(job_id)
        if cached is not None:
            return cached
        async with self._engine.connect() as conn:
            stored = await queries.read_masks(conn, job_id)
        if stored is None:
            raise NotFound(f"job {job_id} does not exist", job_id=job_id)
        data_key: bytes | None = None
        sealed_key = stored.keys.get(self._kind(token))
        if sealed_key is not None:
            encoded = unseal(mask_key(token), sealed_key)
            if encoded is None:
                raise _forbidden(job_id)
            data_key = base64.b64decode(encoded)
        elif stored.keys or stored.values:
            raise _forbidden(job_id)
        values: list[str] = []
        for sealed in stored.values:
            value = None if data_key is None else unseal(data_key, sealed)
            if value is None:
                raise _forbidden(job_id)
            values.append(value)
        masker = Masker(values, self.patterns, in_key=stored.block)
        found = JobMasks(stored.version, masker, data_key)
        self._put(job_id, found)
        return found

    def change(self, before: JobMasks, after: Masker, token: str) -> MaskChange:
        """What an append masked with `before`, ending in state `after`, adds to the store."""
        if after is before.masker:
            return MaskChange(before.version, mask=after.mask)
        added = sorted(after.values - before.masker.values)
        block = after.in_key if after.in_key != before.masker.in_key else None
        keys: dict[str, str] = {}
        data_key = before.data_key
        if added and data_key is None:  # a job from before masking: its key starts now
            data_key = secrets.token_bytes(32)
            keys = self._seal_key(data_key, token)
        sealed = [seal(data_key, value) for value in added] if data_key is not None else []
        return MaskChange(before.version, sealed, keys, block, after.mask, data_key)

    def committed(self, job_id: int, change: MaskChange, after: Masker) -> None:
        """An append with `change` is stored; the job's masks are now `after`."""
        if change.changes:
            self._put(job_id, JobMasks(change.version + 1, after, change.data_key))

    def forget(self, job_id: int) -> None:
        """Drop what this process knows of a job's masks (stale, or the job finished)."""
        self._jobs.pop(job_id, None)

    def _put(self, job_id: int, masks: JobMasks) -> None:
        if len(self._jobs) >= CACHE_SIZE:
            self._jobs.clear()
        self._jobs[job_id] = masks
