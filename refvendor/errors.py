"""Rekognition's wire errors, as the reference vendor raises and renders them.

Every error leaves the vendor as ``HTTP <status>`` with the JSON body
``{"__type": "<code>", "Message": "<message>"}``, which is the shape botocore
parses into ``ClientError`` (and into the typed ``client.exceptions.<code>``
where Rekognition's service model declares the code). The code is the class
name, so a class here is named exactly as the error is on the wire.

    RekognitionError
    ├── InvalidParameterException          a request member is missing or malformed
    ├── InvalidPaginationTokenException    a NextToken this vendor did not issue
    ├── ResourceNotFoundException          no such collection or face
    ├── ResourceAlreadyExistsException     the collection exists already
    ├── InvalidImageFormatException        the bytes are not a JPEG or PNG image
    ├── ImageTooLargeException             over 5 MB, or too many pixels to decode safely
    ├── SerializationException             the body is not a JSON object
    ├── UnknownOperationException          X-Amz-Target names no operation
    ├── MissingAuthenticationTokenException   no Authorization header
    ├── IncompleteSignatureException       Authorization header malformed or incomplete
    ├── UnrecognizedClientException        unknown access key id
    ├── InvalidSignatureException          signature, scope or date does not verify
    └── InternalServerError                a bug in the vendor (HTTP 500)
"""

from __future__ import annotations

from typing import ClassVar


class RekognitionError(Exception):
    """An error the vendor reports to the client; never a crash."""

    status_code: ClassVar[int] = 400

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or type(self).__name__)
        self.message = message

    @property
    def code(self) -> str:
        return type(self).__name__

    def body(self) -> dict[str, str]:
        """The JSON error document, exactly as Rekognition shapes it."""
        document = {"__type": self.code}
        if self.message is not None:
            document["Message"] = self.message
        return document


class InvalidParameterException(RekognitionError):
    pass


class InvalidPaginationTokenException(RekognitionError):
    pass


class ResourceNotFoundException(RekognitionError):
    pass


class ResourceAlreadyExistsException(RekognitionError):
    pass


class InvalidImageFormatException(RekognitionError):
    pass


class ImageTooLargeException(RekognitionError):
    pass


class SerializationException(RekognitionError):
    pass


class UnknownOperationException(RekognitionError):
    pass


class MissingAuthenticationTokenException(RekognitionError):
    pass


class IncompleteSignatureException(RekognitionError):
    pass


class UnrecognizedClientException(RekognitionError):
    pass


class InvalidSignatureException(RekognitionError):
    pass


class InternalServerError(RekognitionError):
    status_code: ClassVar[int] = 500
