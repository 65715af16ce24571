"""The platform's version, defined once, here.

``pyproject.toml`` takes the package's version from this line (setuptools' dynamic ``attr``, read
without importing anything), and the code reads it from here: ``pro --version``, the version each
node records in the admin database. It needs no installed metadata, so it holds in a source tree,
in a wheel and inside a runtime's sandbox alike.
"""

__version__ = "0.1.0"
