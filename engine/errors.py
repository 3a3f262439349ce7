"""The engine's one error hierarchy.

Domain code raises these; ``engine/http/errors.py`` maps each class (through the MRO)
to an HTTP status and the envelope's ``code``. Driver errors never leave the store:
they are translated at the store boundary into :class:`StoreError` subclasses.

::

    EngineError
    ├── InvalidRequest            400 invalid_request   (details name the fields)
    ├── Unauthenticated           401 unauthenticated
    ├── Forbidden                 403 forbidden         (missing scope, dataset not allowed)
    │   ├── InvalidSignature      403 forbidden         (presigned URL altered/expired)
    │   └── CsrfRejected          403 csrf_failed       (a cookie-borne change without its CSRF token)
    ├── NotFound                  404 not_found         (also: another tenant's resource)
    ├── MethodNotAllowed          405 method_not_allowed
    ├── Conflict                  409 conflict          (illegal state transition, duplicate)
    │   ├── IdempotencyInProgress 409 idempotency_in_progress
    │   ├── AlreadyDisputed       409 already_disputed  (a second dispute of one access)
    │   └── NotDisputable         409 not_disputable    (free access, window closed, already paid out)
    ├── PayloadTooLarge           413 payload_too_large
    ├── Unprocessable             422 unprocessable
    │   ├── SizeMismatch          422 size_mismatch
    │   ├── ChecksumMismatch      422 checksum_mismatch
    │   └── IdempotencyKeyReused  422 idempotency_key_reused
    ├── RateLimited               429 rate_limited
    ├── ServiceUnavailable        503 unavailable       (shutting down, dependency down)
    └── StoreError                500 internal          (a bug or a broken store)
        └── UniqueViolation       409 conflict          (when not translated by the caller)
"""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "internal"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(EngineError):
    code = "invalid_request"


class Unauthenticated(EngineError):
    code = "unauthenticated"


class Forbidden(EngineError):
    code = "forbidden"


class InvalidSignature(Forbidden):
    """A presigned URL whose signature does not verify or that has expired."""


class CsrfRejected(Forbidden):
    """A state change authenticated by the console's session cookie without a valid CSRF token."""

    code = "csrf_failed"


class NotFound(EngineError):
    code = "not_found"


class MethodNotAllowed(EngineError):
    code = "method_not_allowed"


class Conflict(EngineError):
    code = "conflict"


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"


class AlreadyDisputed(Conflict):
    code = "already_disputed"


class NotDisputable(Conflict):
    code = "not_disputable"


class PayloadTooLarge(EngineError):
    code = "payload_too_large"


class Unprocessable(EngineError):
    code = "unprocessable"


class SizeMismatch(Unprocessable):
    code = "size_mismatch"


class ChecksumMismatch(Unprocessable):
    code = "checksum_mismatch"


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency_key_reused"


class RateLimited(EngineError):
    code = "rate_limited"


class ServiceUnavailable(EngineError):
    code = "unavailable"


class StoreError(EngineError):
    """The store failed in a way the caller did not expect."""


class UniqueViolation(StoreError):
    """An insert or update hit a unique constraint."""

    code = "conflict"
