"""The public name of the app SDK: ``from pro_sdk import App, Table, Field, Chart, Button``.

The implementation lives in :mod:`sessions.runtime.sdk`; app code imports it from here so it
does not depend on the platform's internal layout.
"""

from sessions.runtime.loader import load_app
from sessions.runtime.sdk import (
    App,
    AppDefinitionError,
    Button,
    Chart,
    Data,
    DataError,
    Field,
    SolveContext,
    Table,
)

__all__ = [
    "App",
    "AppDefinitionError",
    "Button",
    "Chart",
    "Data",
    "DataError",
    "Field",
    "SolveContext",
    "Table",
    "load_app",
]
