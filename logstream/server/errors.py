"""Client errors as values: each kind has its status; one handler renders them as JSON."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the server will not carry out, with an HTTP status and a JSON body."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"error": self.code, "message": self.message, **self.details}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class TooLarge(ApiError):
    status = 413
    code = "too_large"


class Unavailable(ApiError):
    """503: try again later, after `retry_after` seconds (in the body and as Retry-After)."""

    status = 503
    code = "unavailable"
    retry_after = 2

    def body(self) -> dict[str, Any]:
        """The JSON body, with the seconds to wait before retrying."""
        return {**super().body(), "retry_after": self.retry_after}


class StorageFull(Unavailable):
    """The store has no room for the write (a full disk): retrying soon will not help."""

    code = "storage_full"
    retry_after = 60


class ShuttingDown(Unavailable):
    """This process is draining for shutdown: ask another instance (or this one, restarted)."""

    code = "shutting_down"
    retry_after = 1


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class BadHost(ApiError):
    status = 400
    code = "bad_host"


class TargetTooLong(ApiError):
    status = 414
    code = "uri_too_long"


class HeadersTooLarge(ApiError):
    status = 431
    code = "headers_too_large"


class VersionNotSupported(ApiError):
    status = 505
    code = "http_version_not_supported"
