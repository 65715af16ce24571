"""The API's output serializers, with their fields built and bound once per class instead of once per use.

A ``ModelSerializer`` builds its fields from the model each time it is made, and DRF copies and
binds each of them to every serializer made: for a job's GET, which every polling page and script
asks for, that was a third of the request. An output serializer's fields do not depend on the
request (what does, ``context``, is read when a value is rendered), so :class:`OutputSerializer`
builds them once per class, bound to one serializer of the class kept for that, and renders
with them (:meth:`CachedFields.to_representation`). A ``SerializerMethodField`` calls the method
of the serializer in use, so its ``context`` is that serializer's.

A class with a field that renders through its serializer's context or its own state (a nested
serializer, a hyperlink) renders as DRF does, with fields of its own: :func:`_renders_alone`
says which fields do not.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, ClassVar

from rest_framework import serializers
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject

# Fields whose rendering reads nothing of their serializer but their own, fixed configuration.
_ALONE = (
    serializers.BooleanField,
    serializers.CharField,
    serializers.ChoiceField,
    serializers.DateField,
    serializers.DateTimeField,
    serializers.DecimalField,
    serializers.DictField,
    serializers.DurationField,
    serializers.FloatField,
    serializers.IntegerField,
    serializers.JSONField,
    serializers.ListField,
    serializers.ModelField,
    serializers.PrimaryKeyRelatedField,
    serializers.ReadOnlyField,
    serializers.SerializerMethodField,
    serializers.UUIDField,
)


def _renders_alone(field: serializers.Field) -> bool:
    if isinstance(field, (serializers.ListField, serializers.DictField)):
        return _renders_alone(field.child)
    return isinstance(field, _ALONE) and not isinstance(field, serializers.HyperlinkedRelatedField)


class CachedFields:
    """Mixin for a serializer that only renders: its fields built once per class."""

    _built: ClassVar[dict[type, dict[str, Any]]] = {}
    _bound: ClassVar[dict[type, list[tuple[str, Any, str | None]] | None]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def get_fields(self) -> dict[str, Any]:
        cls = type(self)
        built = CachedFields._built.get(cls)
        if built is None:
            built = CachedFields._built[cls] = super().get_fields()  # type: ignore[misc]
        return {
            name: copy.deepcopy(field) if isinstance(field, serializers.BaseSerializer) else copy.copy(field)
            for name, field in built.items()
        }

    @classmethod
    def _plan(cls) -> list[tuple[str, Any, str | None]] | None:
        """(name, bound field, method name of a SerializerMethodField) of each readable field,
        bound once to a serializer of the class; None if a field must render as DRF does."""
        if cls not in CachedFields._bound:
            with CachedFields._lock:
                if cls not in CachedFields._bound:
                    fields = list(cls().fields.values())  # type: ignore[attr-defined]
                    readable = [field for field in fields if not field.write_only]
                    alone = all(_renders_alone(field) for field in readable)
                    CachedFields._bound[cls] = (
                        [
                            (field.field_name, field, getattr(field, "method_name", None))
                            if isinstance(field, serializers.SerializerMethodField)
                            else (field.field_name, field, None)
                            for field in readable
                        ]
                        if alone
                        else None
                    )
        return CachedFields._bound[cls]

    def to_representation(self, instance: Any) -> dict[str, Any]:
        plan = self._plan()
        if plan is None:
            return super().to_representation(instance)  # type: ignore[misc]
        answer: dict[str, Any] = {}
        for name, field, method in plan:  # as DRF's Serializer.to_representation, with shared fields
            if method is not None:
                answer[name] = getattr(self, method)(instance)
                continue
            try:
                attribute = field.get_attribute(instance)
            except SkipField:
                continue
            value = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
            answer[name] = None if value is None else field.to_representation(attribute)
        return answer


class OutputSerializer(CachedFields, serializers.ModelSerializer):
    """A model's representation in the API's answers (never used to read a request)."""
