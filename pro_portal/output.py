"""The API's output serializers, with their fields built once per class instead of once per use.

A ``ModelSerializer`` builds its fields from the model each time it is made: for a job's GET,
which every polling page and script asks for, that was a quarter of the request. An output
serializer's fields do not depend on the request (what does, ``context``, is read when a value is
rendered), so :class:`OutputSerializer` builds them once per class and gives each use its own
shallow copies, which DRF then binds to it. A nested serializer is copied whole each time: it
holds bound fields of its own.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from rest_framework import serializers


class CachedFields:
    """Mixin for a serializer that only renders: ``get_fields`` built once per class."""

    _built: ClassVar[dict[type, dict[str, Any]]] = {}

    def get_fields(self) -> dict[str, Any]:
        cls = type(self)
        built = CachedFields._built.get(cls)
        if built is None:
            built = CachedFields._built[cls] = super().get_fields()  # type: ignore[misc]
        return {
            name: copy.deepcopy(field) if isinstance(field, serializers.BaseSerializer) else copy.copy(field)
            for name, field in built.items()
        }


class OutputSerializer(CachedFields, serializers.ModelSerializer):
    """A model's representation in the API's answers (never used to read a request)."""
