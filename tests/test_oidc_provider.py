"""The test OpenID Connect provider (``tests.oidc``) on its own, driven by hand with ``requests``:
what the platform's single sign-on tests rely on it for."""

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests

from tests.oidc import OIDCProvider, oidc_provider_fixture  # noqa: F401 - the fixture oidc_provider

pytestmark = pytest.mark.live

# Nothing listens there: the flow stops at the redirect, which carries the code.
CALLBACK = "http://127.0.0.1:9/oidc/callback/"
AFTER_LOGOUT = "http://127.0.0.1:9/login/"


def sign_in(browser: requests.Session, login_url: str, username: str, password: str) -> requests.Response:
    """Fill in the provider's login form as a person would; the answer is the redirect to ``next``."""
    page = browser.get(login_url)
    assert page.status_code == 200 and "Sign in" in page.text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    next_url = parse_qs(urlsplit(login_url).query)["next"][0]
    fields = {"csrfmiddlewaretoken": csrf, "username": username, "password": password, "next": next_url}
    return browser.post(page.url, data=fields, allow_redirects=False)


def authorize(browser: requests.Session, provider: OIDCProvider, config: dict, redirect_uri: str = CALLBACK, **extra):
    """The authorization request of a PKCE code flow; the answer (not followed) and the verifier."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid profile email groups",
        "state": "the-state",
        "nonce": "the-nonce",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return browser.get(f"{config['authorization_endpoint']}?{urlencode(query)}", allow_redirects=False), verifier


def test_discovery_document(oidc_provider):
    config = requests.get(oidc_provider.discovery_url, timeout=5).json()
    prefix = f"{oidc_provider.url}/o/"
    assert config["issuer"] == oidc_provider.issuer == f"{oidc_provider.url}/o"
    assert config["authorization_endpoint"] == prefix + "authorize/"
    assert config["token_endpoint"] == prefix + "token/"
    assert config["userinfo_endpoint"] == prefix + "userinfo/"
    assert config["jwks_uri"] == prefix + ".well-known/jwks.json"
    assert config["end_session_endpoint"] == prefix + "logout/"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert "RS256" in config["id_token_signing_alg_values_supported"]
    assert {"openid", "profile", "email", "groups"} <= set(config["scopes_supported"])
    assert {"groups", "preferred_username", "email", "name"} <= set(config["claims_supported"])


def test_code_flow_with_pkce_groups_and_logout(oidc_provider):
    provider = oidc_provider
    provider.add_user("ann", "ann-password", groups=["analysts", "planners"], email="ann@example.com")
    config = requests.get(provider.discovery_url, timeout=5).json()
    browser = requests.Session()

    # Not signed in at the provider: its login page, then back to the authorization.
    answer, verifier = authorize(browser, provider, config)
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/accounts/login/?next=")
    assert sign_in(browser, provider.url + answer.headers["Location"], "ann", "wrong").status_code == 200
    signed_in = sign_in(browser, provider.url + answer.headers["Location"], "ann", "ann-password")
    assert signed_in.status_code == 302
    assert provider.active_sessions("ann") == 1

    # No consent page: straight to the client's callback with the code.
    answer = browser.get(provider.url + signed_in.headers["Location"], allow_redirects=False)
    assert answer.status_code == 302, answer.text
    callback = urlsplit(answer.headers["Location"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == CALLBACK
    code = parse_qs(callback.query)["code"][0]
    assert parse_qs(callback.query)["state"] == ["the-state"]

    # The platform's server side: the code, the verifier and the client's secret in the body.
    token = requests.post(
        config["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
        },
        timeout=5,
    )
    assert token.status_code == 200, token.text
    tokens = token.json()

    signing_key = jwt.PyJWKClient(config["jwks_uri"]).get_signing_key_from_jwt(tokens["id_token"])
    claims = jwt.decode(
        tokens["id_token"], signing_key, algorithms=["RS256"], audience=provider.client_id, issuer=provider.issuer
    )
    assert claims["nonce"] == "the-nonce"
    assert claims["preferred_username"] == "ann"
    assert claims["email"] == "ann@example.com"
    assert claims["groups"] == ["analysts", "planners"]

    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    userinfo = requests.get(config["userinfo_endpoint"], headers=bearer, timeout=5).json()
    assert userinfo["sub"] == claims["sub"]
    assert userinfo["preferred_username"] == "ann"
    assert userinfo["groups"] == ["analysts", "planners"]
    provider.set_groups("ann", ["planners"])
    assert requests.get(config["userinfo_endpoint"], headers=bearer, timeout=5).json()["groups"] == ["planners"]

    # RP-initiated logout with the ID token: no prompt, the provider's session ends, back to the client.
    query = {
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": AFTER_LOGOUT,
        "client_id": provider.client_id,
        "state": "bye",
    }
    answer = browser.get(f"{config['end_session_endpoint']}?{urlencode(query)}", allow_redirects=False)
    assert answer.status_code == 302, answer.text
    assert answer.headers["Location"] == AFTER_LOGOUT + "?state=bye"
    assert provider.active_sessions("ann") == 0
    assert browser.get(provider.url).text == "Not signed in at the provider."
    # The logout also revoked the platform's tokens at the provider.
    assert requests.get(config["userinfo_endpoint"], headers=bearer, timeout=5).status_code == 401


def test_pkce_and_registered_redirects_are_required(oidc_provider):
    provider = oidc_provider
    provider.add_user("bob", "bob-password")
    config = requests.get(provider.discovery_url, timeout=5).json()
    browser = requests.Session()
    answer, _ = authorize(browser, provider, config)
    sign_in(browser, provider.url + answer.headers["Location"], "bob", "bob-password")

    # Without a code challenge: an error, to the client.
    answer, _ = authorize(browser, provider, config, code_challenge="", code_challenge_method="")
    assert "error=invalid_request" in answer.headers["Location"]

    # A callback that is not registered gets no redirect, until it is allowed.
    elsewhere = "http://localhost:9/oidc/callback/"
    answer, _ = authorize(browser, provider, config, redirect_uri=elsewhere)
    assert answer.status_code == 400
    provider.allow_redirect(elsewhere)
    answer, _ = authorize(browser, provider, config, redirect_uri=elsewhere)
    assert answer.headers["Location"].startswith(elsewhere + "?code=")
