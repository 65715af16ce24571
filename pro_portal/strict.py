"""Strict request bodies: what a client sends is either understood whole or refused with a 400.

Two pieces, shared by every API view that reads a body:

- :class:`StrictJSONParser` refuses what JSON allows but Python turns into trouble later: numbers
  a float cannot hold (``1e400`` would become infinity, a 400-digit integer overflows the first
  ``float()`` it meets), ``NaN``/``Infinity``, and nesting deeper than :data:`MAX_DEPTH` (the
  decoder itself recurses, and so does much of what handles the value afterwards).
- :class:`StrictSerializer` (or :class:`StrictFieldsMixin`) refuses a field it does not declare,
  naming it: ``data`` sent for ``input`` must not quietly mean "the default input".

Both raise DRF's own exceptions, which ``pro_portal.errors.api_exception_handler`` answers in
the API's one error shape.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

MAX_DEPTH = 32  # levels of arrays and objects in a body; the deepest the API takes is 4 (a job's input tables)
MAX_NUMBER_TEXT = 400  # characters shown of a refused number


class _Refused(Exception):
    """Raised from the decoder's hooks: the body is refused with this message."""


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Refused(f"the number {text[:MAX_NUMBER_TEXT]} is too large for a float")
    return number


def _float_sized_int(text: str) -> int:
    number = int(text)
    try:
        float(number)
    except OverflowError:
        shown = text if len(text) <= 40 else f"{text[:20]}…({len(text)} digits)"
        raise _Refused(f"the number {shown} is too large for a float") from None
    return number


def _no_constant(text: str) -> Any:
    raise _Refused(f"{text} is not a number JSON allows")


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests arrays and objects deeper than ``limit`` (iteratively: no recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def loads_strict(text: str) -> Any:
    """Decode a JSON text as the API accepts it; raise DRF's ``ParseError`` saying what is refused."""
    try:
        value = json.loads(text, parse_float=_finite_float, parse_int=_float_sized_int, parse_constant=_no_constant)
    except _Refused as exc:
        raise ParseError(f"The JSON body is refused: {exc}.") from None
    except RecursionError:  # deeper than the decoder itself goes
        raise ParseError(f"The JSON body is nested deeper than {MAX_DEPTH} levels.") from None
    except ValueError as exc:  # JSONDecodeError, and int()'s limit on digits
        raise ParseError(f"JSON parse error - {exc}") from None
    if _too_deep(value):
        raise ParseError(f"The JSON body is nested deeper than {MAX_DEPTH} levels.")
    return value


class StrictJSONParser(JSONParser):
    """DRF's JSON parser with the refusals of :func:`loads_strict`."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
        except UnicodeDecodeError as exc:
            raise ParseError(f"The JSON body is not valid {encoding}: {exc}") from None
        return loads_strict(text)


# What a view that reads a body declares: JSON only, or JSON beside the form encodings it took before.
JSON_BODY = [StrictJSONParser]
JSON_OR_FORM_BODY = [StrictJSONParser, FormParser, MultiPartParser]


class StrictFieldsMixin:
    """A serializer that refuses fields it does not declare, each named in the error."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            fields: Mapping[str, serializers.Field] = self.fields  # type: ignore[attr-defined]
            known = sorted(name for name, field in fields.items() if not field.read_only)
            unknown = [str(name) for name in data if name not in fields or fields[name].read_only]
            if unknown:
                takes = f"this request takes {', '.join(known)}" if known else "this request takes no fields"
                raise serializers.ValidationError({name: [f"Unknown field: {takes}."] for name in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(StrictFieldsMixin, serializers.Serializer):
    """The base of every request body's serializer (``...In``, ``...Patch``, ``...Request``)."""
