from apps.accounts.services import user_is_publisher, user_role


def platform(request) -> dict:
    """What every portal page needs to draw its header."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"role": None, "is_publisher": False}
    return {"role": user_role(user).value, "is_publisher": user_is_publisher(user)}
