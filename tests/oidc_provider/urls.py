from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.urls import include, path


def home(request):
    """Where the provider's own login and logout end when no client asked for somewhere else."""
    if request.user.is_authenticated:
        return HttpResponse(f"Signed in at the provider as {request.user.get_username()}.", content_type="text/plain")
    return HttpResponse("Not signed in at the provider.", content_type="text/plain")


urlpatterns = [
    # The issuer is <server>/o: discovery at /o/.well-known/openid-configuration.
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("", home),
]
