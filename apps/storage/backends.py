"""Storage backends of the platform: a folder with atomic writes, and S3 with streaming reads."""

from __future__ import annotations

import io
import os
import tempfile

from botocore.exceptions import ClientError
from django.core.files import File
from django.core.files.storage import FileSystemStorage
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

TEMPORARY_PREFIX = ".upload-"


class AtomicFileSystemStorage(FileSystemStorage):
    """A folder storage whose writes appear whole or not at all.

    Django's folder storage writes into the final file, so an upload that fails half-way
    would leave half a file, or half-overwrite a good one. This one writes a temporary file
    beside the target and renames it into place, as an S3 put behaves.
    """

    def _save(self, name: str, content) -> str:
        full_path = self.path(name)
        directory = os.path.dirname(full_path)
        os.makedirs(directory, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=TEMPORARY_PREFIX)
        try:
            with os.fdopen(fd, "wb") as sink:
                for chunk in content.chunks():
                    sink.write(chunk)
            os.chmod(temporary, self.file_permissions_mode or 0o640)
            os.replace(temporary, full_path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        return os.path.relpath(full_path, self.location).replace("\\", "/")


class S3ObjectReader(io.RawIOBase):
    """An S3 object read as a stream: ranged GETs from the position asked for, nothing held whole.

    django-storages' ``S3File`` downloads the whole object into a buffer before the first byte
    is read (a 150 MB download grew the web server by 239 MB); this reads the response body as
    it comes, and a seek starts a new ranged GET from there.
    """

    def __init__(self, obj):
        self.obj, self.size, self.position, self.body = obj, obj.content_length, 0, None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        target = max(0, base + offset)
        if target != self.position:
            self._drop_body()
            self.position = target
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.size:
            return 0
        if self.body is None:
            self.body = self.obj.get(Range=f"bytes={self.position}-")["Body"]
        data = self.body.read(len(buffer))
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _drop_body(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None

    def close(self) -> None:
        self._drop_body()
        super().close()


class StreamingS3Storage(S3Storage):
    """django-storages' S3 storage whose files opened for reading stream (see ``S3ObjectReader``)."""

    def _open(self, name: str, mode: str = "rb"):
        if any(flag in mode for flag in "wa+"):
            return super()._open(name, mode)
        key = self._normalize_name(clean_name(name))
        obj = self.bucket.Object(key)
        try:
            obj.load()
        except ClientError as err:
            if err.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                raise FileNotFoundError(f"File does not exist: {name}") from None
            raise
        reader = S3ObjectReader(obj)
        handle = File(io.BufferedReader(reader, buffer_size=1024 * 1024), name=name)
        handle.size = reader.size
        return handle
