"""Storage backends of the platform (django-storages' S3 backend needs nothing more)."""

from __future__ import annotations

import os
import tempfile

from django.core.files.storage import FileSystemStorage

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
