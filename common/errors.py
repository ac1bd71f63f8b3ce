"""The one error hierarchy of the system.

Every failure that a person or a peer service can cause is one of these classes; each carries the HTTP
status it maps to, and a message written for the person who has to act on it. The mapping to HTTP lives in
one place (``common.http_errors``); domain code raises these and never builds HTTP responses itself. A peer's
error answer becomes one of these again in one place too (``common.peer_errors``, keyed on the ``error`` code).

::

    SplitComputingError                      500  (only for states the code believes impossible)
     +-- BadRequest                          400
     |    +-- InvalidFrame                   400  malformed wire frame (each field has its own message)
     |    +-- InvalidImage                   400  not a decodable image, bomb, truncated
     |    +-- InvalidArgument                400  a form field or JSON value that makes no sense
     +-- Unauthorized                        401
     +-- NotFound                            404
     +-- NotAcceptable                       406  an answer asked for in a form this answer does not come in
     +-- Conflict                            409
     |    +-- UnknownSplit                   409  a frame or request names a split this service does not hold
     |    +-- NotDeployed                    409  nothing deployed yet
     +-- PayloadTooLarge                     413
     +-- UnsupportedMediaType                415
     +-- UnprocessableModel                  422  the file is a model, but not one we can cut or run
     |    +-- UnsafeModelFormat              422  pickled modules, external data outside the model folder
     +-- FrameMismatch                       422  a well-formed frame whose bits/shape/range disagree with the manifest
     +-- BadGateway                          502  a peer service answered with something we cannot use
     +-- UpstreamUnavailable                 503  a peer service is down
     +-- NotReady                            503  this service runs but cannot serve yet (nothing deployed)
     +-- Overloaded                          503  this service's queue is full: try again, or another replica
     +-- UpstreamTimeout                     504  a peer service did not answer in time
     +-- DeadlineExceeded                    504  the caller's deadline passed before the work could start
     +-- InsufficientStorage                 507  the disk is full; nothing was stored, the bytes needed are named
"""

from __future__ import annotations


class SplitComputingError(Exception):
    """Base of every error this system raises on purpose."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.message}


class BadRequest(SplitComputingError):
    status_code = 400
    code = "bad_request"


class InvalidFrame(BadRequest):
    code = "invalid_frame"


class InvalidImage(BadRequest):
    code = "invalid_image"


class InvalidArgument(BadRequest):
    code = "invalid_argument"


class Unauthorized(SplitComputingError):
    status_code = 401
    code = "unauthorized"


class NotFound(SplitComputingError):
    status_code = 404
    code = "not_found"


class NotAcceptable(SplitComputingError):
    status_code = 406
    code = "not_acceptable"


class Conflict(SplitComputingError):
    status_code = 409
    code = "conflict"


class UnknownSplit(Conflict):
    code = "unknown_split"


class NotDeployed(Conflict):
    code = "not_deployed"


class PayloadTooLarge(SplitComputingError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(SplitComputingError):
    status_code = 415
    code = "unsupported_media_type"


class UnprocessableModel(SplitComputingError):
    status_code = 422
    code = "unprocessable_model"


class UnsafeModelFormat(UnprocessableModel):
    code = "unsafe_model_format"


class FrameMismatch(SplitComputingError):
    status_code = 422
    code = "frame_mismatch"


class BadGateway(SplitComputingError):
    status_code = 502
    code = "bad_gateway"


class UpstreamUnavailable(SplitComputingError):
    status_code = 503
    code = "upstream_unavailable"


class NotReady(SplitComputingError):
    status_code = 503
    code = "not_ready"


class Overloaded(SplitComputingError):
    status_code = 503
    code = "overloaded"


class UpstreamTimeout(SplitComputingError):
    status_code = 504
    code = "upstream_timeout"


class DeadlineExceeded(SplitComputingError):
    status_code = 504
    code = "deadline_exceeded"


class InsufficientStorage(SplitComputingError):
    status_code = 507
    code = "insufficient_storage"


__all__ = [
    "BadGateway",
    "BadRequest",
    "Conflict",
    "DeadlineExceeded",
    "FrameMismatch",
    "InsufficientStorage",
    "InvalidArgument",
    "InvalidFrame",
    "InvalidImage",
    "NotAcceptable",
    "NotDeployed",
    "NotFound",
    "NotReady",
    "Overloaded",
    "PayloadTooLarge",
    "SplitComputingError",
    "Unauthorized",
    "UnknownSplit",
    "UnprocessableModel",
    "UnsafeModelFormat",
    "UnsupportedMediaType",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]
