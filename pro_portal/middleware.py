from django.shortcuts import render

from .errors import ApplicationError


class ApplicationErrorMiddleware:
    """Portal pages: an :class:`ApplicationError` a view lets through becomes an error page.

    The API translates its errors itself (``api_exception_handler``); this is the one place
    where the portal does.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, ApplicationError) or request.path.startswith("/api/"):
            return None
        return render(request, "portal/error.html", {"error": exception}, status=exception.status)
