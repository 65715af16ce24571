"""Streaming file downloads that keep the server's memory flat."""

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header

DOWNLOAD_CHUNK = 1024 * 1024


async def _chunks(handle):
    """Read a file a chunk at a time off the event loop; the server sends each before the next.

    Django buffers a *synchronous* iterator whole before serving it over ASGI, so a
    FileResponse would hold the entire file in memory; an asynchronous one streams.
    """
    try:
        while chunk := await sync_to_async(handle.read, thread_sensitive=False)(DOWNLOAD_CHUNK):
            yield chunk
    finally:
        await sync_to_async(handle.close, thread_sensitive=False)()


def file_download(handle, size: int, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_chunks(handle), content_type="application/octet-stream")
    response["Content-Length"] = str(size)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response
