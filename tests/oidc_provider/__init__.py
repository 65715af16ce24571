"""A real OpenID Connect provider for the tests: a tiny Django project of its own on django-oauth-toolkit.

The tests start it as a separate process (``tests.oidc``): never import its settings into the
pytest process, which runs the platform's.
"""
