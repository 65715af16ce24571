"""Reading uploaded bodies within a size limit, the same way for the portal and the API."""

from __future__ import annotations

from django.http import HttpRequest

from .errors import ApplicationError, TooLarge

# What a multipart form may add around its file: boundaries, part headers, small fields.
MULTIPART_OVERHEAD = 64 * 1024


def declared_length(request: HttpRequest) -> int | None:
    raw = request.META.get("CONTENT_LENGTH")
    try:
        return int(raw) if raw else None
    except ValueError:
        raise ApplicationError("The Content-Length header is not a number.", code="invalid") from None


def check_declared_length(request: HttpRequest, limit: int, what: str) -> None:
    """Refuse before reading when the client announces more than ``limit`` bytes."""
    length = declared_length(request)
    if length is not None and length > limit:
        raise TooLarge(f"The {what} is {length} bytes, over the limit of {limit} bytes.")


def read_uploaded_bytes(request: HttpRequest, field: str, limit: int, what: str) -> bytes:
    """The bytes of a multipart file field, or of the raw body for other content types."""
    check_declared_length(request, limit + MULTIPART_OVERHEAD, what)
    if request.content_type == "multipart/form-data":
        upload = request.FILES.get(field)
        if upload is None:
            raise ApplicationError(f"Send the {what} as the form field {field!r}.", code="invalid")
        if upload.size > limit:
            raise TooLarge(f"The {what} is {upload.size} bytes, over the limit of {limit} bytes.")
        return upload.read()
    body = request.read(limit + 1)
    if len(body) > limit:
        raise TooLarge(f"The {what} is over the limit of {limit} bytes.")
    return body


def uploaded_stream(request: HttpRequest, field: str, limit: int, what: str):
    """A readable stream of a multipart file field, or of the raw body: nothing is read yet.

    The caller reads it in chunks and must still stop past ``limit`` (a chunked body declares no length).
    """
    if request.content_type == "multipart/form-data":
        check_declared_length(request, limit + MULTIPART_OVERHEAD, what)
        upload = request.FILES.get(field)
        if upload is None:
            raise ApplicationError(f"Send the {what} as the form field {field!r}.", code="invalid")
        if upload.size > limit:
            raise TooLarge(f"The {what} is {upload.size} bytes, over the limit of {limit} bytes.")
        return upload
    check_declared_length(request, limit, what)
    return request
