"""Schemathesis hooks for ``tests/test_api_fuzz.py``, loaded by ``st run`` (``SCHEMATHESIS_HOOKS``).

They run in the schemathesis process, which reaches the test database the way the web server
does (the environment names it), so that:

- every request carries a ticket of the fuzz user, minted here rather than by logging in (the
  fuzzer's bad logins lock the source address out) and minted again after the fuzzer revoked
  it with ``DELETE /auth/tickets/current``;
- path parameters are drawn from the real object ids the test made (``PRO_FUZZ_IDS``, JSON:
  parameter name → values) as well as from the schema, so the object endpoints are reached.
"""

from __future__ import annotations

import json
import os

import django
import schemathesis
from hypothesis import strategies as st

django.setup()

FUZZ_USER = os.environ["PRO_FUZZ_USER"]
REAL_IDS: dict[str, list] = json.loads(os.environ.get("PRO_FUZZ_IDS", "{}"))


@schemathesis.auth(refresh_interval=None)
class FuzzUserTicket:
    raw = ""

    def get(self, case, context) -> str:
        if not FuzzUserTicket.raw:
            from django.contrib.auth import get_user_model

            from apps.accounts.services import ticket_issue_for_user

            user = get_user_model().objects.get(username=FUZZ_USER)
            FuzzUserTicket.raw, _ = ticket_issue_for_user(user=user)
        return FuzzUserTicket.raw

    def set(self, case, data: str, context) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def after_call(context, case, response) -> None:
    revoked = case.method.upper() == "DELETE" and case.path.endswith("/auth/tickets/current")
    if revoked and response.status_code == 204:
        FuzzUserTicket.raw = ""


@schemathesis.hook
def before_generate_path_parameters(context, strategy):
    names = [parameter.name for parameter in context.operation.path_parameters]
    if not names or not all(REAL_IDS.get(name) for name in names):
        return strategy
    real = st.fixed_dictionaries({name: st.sampled_from(REAL_IDS[name]) for name in names})
    return st.one_of(real, strategy)
