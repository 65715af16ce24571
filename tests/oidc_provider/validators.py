"""The claims the platform reads: user name, e-mail, full name and group names."""

from oauth2_provider.oauth2_validators import OAuth2Validator


class ClaimsValidator(OAuth2Validator):
    # Each claim goes out only when its scope was granted; ``groups`` has a scope of its own.
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "groups"}

    # Without the request argument DOT calls the values per request and also lists the claim
    # names in the discovery document's ``claims_supported``. The same claims go into the ID
    # token and the userinfo answer.
    def get_additional_claims(self):
        return {
            "preferred_username": lambda request: request.user.get_username(),
            "name": lambda request: request.user.get_full_name() or request.user.get_username(),
            "email": lambda request: request.user.email,
            "groups": lambda request: sorted(request.user.groups.values_list("name", flat=True)),
        }
