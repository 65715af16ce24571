"""Querysets compiled to SQL once per process, then run with new parameters.

Django compiles a queryset to SQL at every evaluation: for the queries that every request makes
(a job's page, polled by every script and browser watching it) that compilation costs more than
running the query and building its objects. A :class:`PreparedQuery` builds the queryset once per
variant (say, "the caller is an admin" or not) with a sentinel value for each parameter, compiles
it, and keeps the SQL, the positions of the sentinels among its parameters, the converters of
its columns and the way its rows become model instances (with their ``select_related``
relations), as Django's own ``ModelIterable`` does. Each :meth:`PreparedQuery.fetch` then only
binds the parameters, runs the SQL and builds the objects.

Only for querysets of model instances without ``prefetch_related``, ``extra`` or known related
objects; their SQL must not depend on the parameters' values (an ``__in`` list does).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators  # type: ignore[attr-defined]

M = TypeVar("M", bound=Model)
# An id no row has, each parameter its own: within a 32-bit integer column's range, for Django
# answers a value beyond a column's range with an empty result before any SQL is made.
SENTINEL_BASE = -2_039_481_723


@dataclass
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slots: dict[int, tuple[str, type]]  # parameter position -> name and the int type it is given as
    compiler: Any
    converters: Any
    init_list: list[str]
    model_range: tuple[int, int]
    populators: list[Any]
    database: str


def _bound(values: dict[str, Any], name: str, wrapper: type) -> Any:
    value = values[name]
    return value if wrapper is int or value is None else wrapper(value)


class PreparedQuery(Generic[M]):
    def __init__(self, build: Callable[..., QuerySet[M]], *names: str):
        """``build(variant, **params)`` returns the queryset, with each parameter as given (a
        variant may leave some out)."""
        self.build, self.names = build, names
        self.compiled: dict[Hashable, _Compiled] = {}
        self.lock = threading.Lock()

    def _compile(self, variant: Hashable) -> _Compiled:
        sentinels = {name: SENTINEL_BASE - index for index, name in enumerate(self.names)}
        queryset = self.build(variant, **sentinels)
        if queryset._prefetch_related_lookups or queryset._known_related_objects:  # type: ignore[attr-defined]
            raise ValueError("a prepared query cannot prefetch")
        database = queryset.db
        compiler = queryset.query.get_compiler(using=database)
        sql, params = compiler.as_sql()  # also fills compiler.select and compiler.klass_info
        by_value = {value: name for name, value in sentinels.items()}
        # A parameter may be a list (a JSON key path), or an int the backend wrapped in a type of
        # its own (psycopg's Int4 for a Value on PostgreSQL): each slot keeps that wrapper.
        slots = {
            position: (by_value[int(value)], type(value))
            for position, value in enumerate(params)
            if isinstance(value, int) and not isinstance(value, bool) and int(value) in by_value
        }
        klass_info, select = compiler.klass_info, compiler.select
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        return _Compiled(
            sql=sql,
            params=tuple(params),
            slots=slots,
            compiler=compiler,
            converters=compiler.get_converters([column[0] for column in select[: compiler.col_count]]),
            init_list=[column[0].target.attname for column in select[start:end]],
            model_range=(start, end),
            populators=get_related_populators(klass_info, select, database),
            database=database,
        )

    def _compiled(self, variant: Hashable) -> _Compiled:
        found = self.compiled.get(variant)
        if found is None:
            with self.lock:
                found = self.compiled.get(variant) or self._compile(variant)
                self.compiled[variant] = found
        return found

    def fetch(self, variant: Hashable, **values: Any) -> list[M]:
        """The model instances the query finds with ``values`` for its parameters."""
        prepared = self._compiled(variant)
        params = [
            _bound(values, *prepared.slots[i]) if i in prepared.slots else p for i, p in enumerate(prepared.params)
        ]
        with connections[prepared.database].cursor() as cursor:
            cursor.execute(prepared.sql, params)
            rows = cursor.fetchall()
        if prepared.converters:
            rows = list(prepared.compiler.apply_converters(rows, prepared.converters))
        model = prepared.compiler.klass_info["model"]
        start, end = prepared.model_range
        found: list[M] = []
        for row in rows:
            instance = model.from_db(prepared.database, prepared.init_list, row[start:end])
            for populator in prepared.populators:
                populator.populate(row, instance)
            for name, position in prepared.compiler.annotation_col_map.items():
                setattr(instance, name, row[position])
            found.append(cast(M, instance))
        return found
