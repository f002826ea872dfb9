"""One error tree; the problem middleware alone turns it into RFC 9457 JSON.

    GatewayError (500 internal_error)
    ├── ValidationFailedError        422 validation_failed   (errors=[{field, message}])
    ├── MalformedRequestError        400 malformed_request
    ├── PdfInvalidError              422 pdf_invalid
    ├── PdfEncryptedError            422 pdf_encrypted
    ├── PdfCertifiedError            422 pdf_certified     (certified "no changes allowed")
    ├── InspectorBusyError           503 inspector_busy    (retry_after)
    ├── UnavailableError             503 unavailable       (retry_after; the database cannot be reached)
    ├── DocumentTooLargeError        413 document_too_large
    ├── UnauthorizedError            401 unauthorized
    ├── ForbiddenError               403 forbidden
    ├── InstanceNotPaidError         402 instance_not_paid
    ├── QuotaExceededError           402 quota_exceeded
    ├── SigningDisabledError         403 signing_disabled
    ├── NotFoundError                404 not_found
    ├── GoneError                    410 gone              (dead signer link; ``reason`` says why)
    ├── InvalidStateError            409 invalid_state
    ├── CodeRejectedError            422 code_rejected     (attempts_left)
    ├── TooManyRequestsError         429 rate_limited      (retry_after)
    ├── IdempotencyConflictError     422 idempotency_conflict
    ├── IdempotencyInProgressError   409 idempotency_in_progress
    ├── ProviderError                502 provider_error
    └── DeliveryError                — raised by e-mail/SMS adapters (permanent: bool)
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "CodeRejectedError",
    "DeliveryError",
    "DocumentTooLargeError",
    "FieldError",
    "ForbiddenError",
    "GatewayError",
    "GoneError",
    "IdempotencyConflictError",
    "IdempotencyInProgressError",
    "InspectorBusyError",
    "InstanceNotPaidError",
    "InvalidStateError",
    "MalformedRequestError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PdfCertifiedError",
    "PdfEncryptedError",
    "PdfInvalidError",
    "ProviderError",
    "QuotaExceededError",
    "SigningDisabledError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "ValidationFailedError",
]

FieldError = dict[str, str]


class GatewayError(Exception):
    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}


class ValidationFailedError(GatewayError):
    code, status, title = "validation_failed", 422, "The request is not valid"


class MalformedRequestError(GatewayError):
    code, status, title = "malformed_request", 400, "The request could not be read"


class UnsupportedMediaTypeError(GatewayError):
    code, status, title = "unsupported_media_type", 415, "The body's media type is not accepted here"


class MethodNotAllowedError(GatewayError):
    code, status, title = "method_not_allowed", 405, "This method is not allowed on this resource"


class PdfInvalidError(GatewayError):
    code, status, title = "pdf_invalid", 422, "The document is not a readable PDF"


class PdfEncryptedError(GatewayError):
    code, status, title = "pdf_encrypted", 422, "The document is encrypted"


class PdfCertifiedError(GatewayError):
    code, status, title = "pdf_certified", 422, "The document is certified against any change"


class InspectorBusyError(GatewayError):
    code, status, title = "inspector_busy", 503, "Every document inspector is busy"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Every document inspector is busy; send the request again in a few seconds.",
            headers={"Retry-After": str(retry_after)}, extra={"retry_after": retry_after},
        )


class UnavailableError(GatewayError):
    code, status, title = "unavailable", 503, "Temporarily unavailable"

    def __init__(self, retry_after: int = 5) -> None:
        super().__init__(
            "The gateway cannot reach its database right now. "
            "Send the request again in a few seconds (with the same Idempotency-Key, if it had one).",
            headers={"Retry-After": str(retry_after)}, extra={"retry_after": retry_after},
        )


class DocumentTooLargeError(GatewayError):
    code, status, title = "document_too_large", 413, "The document is too large"


class UnauthorizedError(GatewayError):
    code, status, title = "unauthorized", 401, "Missing or invalid API key"
    challenge: ClassVar[str] = 'Bearer realm="esign-gateway"'
    """``WWW-Authenticate`` of every 401 (RFC 9110 §11.6.1)."""


class ForbiddenError(GatewayError):
    code, status, title = "forbidden", 403, "This key may not do that"


class InstanceNotPaidError(GatewayError):
    code, status, title = "instance_not_paid", 402, "Online signing needs a paid instance"


class QuotaExceededError(GatewayError):
    code, status, title = "quota_exceeded", 402, "The monthly document allowance is used up"


class SigningDisabledError(GatewayError):
    code, status, title = "signing_disabled", 403, "The signing module is terminated for this tenant"


class NotFoundError(GatewayError):
    code, status, title = "not_found", 404, "Not found"


class GoneError(GatewayError):
    code, status, title = "gone", 410, "This link is no longer valid"


class InvalidStateError(GatewayError):
    code, status, title = "invalid_state", 409, "Not possible in the current state"


class CodeRejectedError(GatewayError):
    code, status, title = "code_rejected", 422, "The code is not valid"


class TooManyRequestsError(GatewayError):
    code, status, title = "rate_limited", 429, "Too many requests"


class IdempotencyConflictError(GatewayError):
    code, status, title = "idempotency_conflict", 422, "Idempotency key reused with another body"


class IdempotencyInProgressError(GatewayError):
    code, status, title = "idempotency_in_progress", 409, "A request with this idempotency key is still running"


class ProviderError(GatewayError):
    code, status, title = "provider_error", 502, "The signature provider failed"


class DeliveryError(GatewayError):
    code, status, title = "delivery_failed", 502, "A message could not be delivered"

    def __init__(self, detail: str | None = None, *, permanent: bool = False) -> None:
        super().__init__(detail)
        self.permanent = permanent
