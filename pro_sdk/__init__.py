"""The public name of the app SDK: ``from pro_sdk import App, Table, Field, Chart, Button``.

The implementation lives in :mod:`sessions.runtime.sdk`; app code imports it from here so it
does not depend on the platform's internal layout. ``App`` is the public name of
:class:`~sessions.runtime.sdk.AppDefinition`, the declaration of an app (not the catalogue's
published app).
"""

from sessions.runtime.connections import ConnectionNotGranted, connection
from sessions.runtime.loader import load_app

try:  # HiGHS is optional for apps that do not solve
    from sessions.runtime.highs import attach as attach_highs
    from sessions.runtime.highs import has_solution
    from sessions.runtime.highs import run as run_highs
except ImportError:  # pragma: no cover
    attach_highs = run_highs = has_solution = None
from sessions.runtime.sdk import (
    AppDefinition,
    AppDefinitionError,
    Button,
    Chart,
    Data,
    DataError,
    Field,
    SolveContext,
    Table,
)

App = AppDefinition

__all__ = [
    "App",
    "AppDefinition",
    "AppDefinitionError",
    "Button",
    "Chart",
    "ConnectionNotGranted",
    "Data",
    "DataError",
    "Field",
    "SolveContext",
    "Table",
    "attach_highs",
    "connection",
    "has_solution",
    "load_app",
    "run_highs",
]
