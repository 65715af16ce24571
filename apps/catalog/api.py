from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from pro_portal.errors import NotFound
from pro_portal.openapi import ERROR
from pro_portal.strict import JSON_BODY
from pro_portal.uploads import read_uploaded_bytes, uploaded_stream

from . import runtimes, selectors, services
from .keys import platform_key_id, platform_public_key_pem
from .serializers import (
    AppOut,
    AppPatch,
    EnvironmentDetailOut,
    EnvironmentOut,
    GrantIn,
    GrantOut,
    PublisherKeyOut,
    PublishForm,
    PublishOut,
    RuntimeDetailOut,
    RuntimeForm,
    RuntimeOut,
    RuntimePatch,
    VersionOut,
    VersionPatch,
    WheelOut,
    publish_make_latest,
)


def app_out(request, apps, many: bool = False) -> dict | list:
    """Apps as the user sees them: their access and the versions they may use.

    Both are read along by the selectors (``apps_for_user``, ``with_versions``) for a list:
    what is asked per app here answers from what was read.
    """
    user = request.user
    context = {
        "access": lambda app: selectors.app_access_level(user, app),
        "versions": lambda app: selectors.versions_for_user(user, app),
    }
    return AppOut(apps, many=many, context=context).data


class PublisherKeyApi(APIView):
    """The public key that app packages for this platform are encrypted with."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(responses=PublisherKeyOut)
    def get(self, request):
        body = {
            "key_id": platform_key_id(),
            "algorithm": "RSA-OAEP-SHA256+AES-256-GCM",
            "public_key": platform_public_key_pem(),
        }
        return Response(PublisherKeyOut(body).data)


class RuntimeListApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(responses=RuntimeOut(many=True))
    def get(self, request):
        return Response(RuntimeOut(selectors.runtimes(), many=True).data)

    @extend_schema(
        request={"multipart/form-data": RuntimeForm, "application/octet-stream": bytes},
        responses={
            201: RuntimeOut,
            400: OpenApiResponse(ERROR.response, description="Unsigned, untrusted, tampered or malformed."),
            403: ERROR,
            409: ERROR,
            413: ERROR,
        },
        description="Admins: add a signed runtime file (.proruntime, from `pro runtime build`).",
    )
    def post(self, request):
        stream = uploaded_stream(request._request, "file", settings.PRO_MAX_RUNTIME_BYTES, "runtime file")
        runtime = runtimes.runtime_add(user=request.user, stream=stream, request=request)
        return Response(RuntimeOut(selectors.runtimes().get(pk=runtime.pk)).data, status=status.HTTP_201_CREATED)


class RuntimeDetailApi(APIView):
    parser_classes = JSON_BODY

    @extend_schema(responses={200: RuntimeDetailOut, 403: ERROR, 404: ERROR})
    def get(self, request, key: str):
        return Response(RuntimeDetailOut(selectors.runtime_detail(request.user, key)).data)

    @extend_schema(request=RuntimePatch, responses={200: RuntimeOut, 403: ERROR, 404: ERROR})
    def patch(self, request, key: str):
        selectors.runtime_detail(request.user, key)  # who may, and which, before what
        body = RuntimePatch(data=request.data)
        body.is_valid(raise_exception=True)
        runtimes.runtime_deprecate(
            user=request.user, key=key, deprecated=body.validated_data["deprecated"], request=request
        )
        return Response(RuntimeOut(selectors.runtimes().get(key=key)).data)

    @extend_schema(responses={204: None, 403: ERROR, 404: ERROR, 409: ERROR})
    def delete(self, request, key: str):
        runtimes.runtime_delete(user=request.user, key=key, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EnvironmentListApi(APIView):
    @extend_schema(responses={200: EnvironmentOut(many=True), 403: ERROR})
    def get(self, request):
        return Response(EnvironmentOut(selectors.environments(request.user), many=True).data)


class EnvironmentDetailApi(APIView):
    @extend_schema(responses={200: EnvironmentDetailOut, 403: ERROR, 404: ERROR})
    def get(self, request, key: str):
        environment = selectors.environments(request.user).filter(key=key).first()
        if environment is None:
            raise NotFound(f"There is no environment {key!r}.")
        return Response(EnvironmentDetailOut(environment).data)


class WheelhouseApi(APIView):
    @extend_schema(responses={200: WheelOut(many=True), 403: ERROR})
    def get(self, request):
        return Response(WheelOut(selectors.wheelhouse_files(request.user), many=True).data)


class WheelApi(APIView):
    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={201: WheelOut, 400: ERROR, 403: ERROR, 413: ERROR},
        description="Admins: add a wheel for builds on nodes without a package index.",
    )
    def put(self, request, name: str):
        stream = uploaded_stream(request._request, "file", settings.PRO_MAX_WHEEL_BYTES, "wheel")
        runtimes.wheelhouse_add(user=request.user, name=name, stream=stream, request=request)
        return Response(WheelOut({"name": name, "size": default_storage.size(f"wheelhouse/{name}")}).data, status=201)

    @extend_schema(responses={204: None, 403: ERROR, 404: ERROR})
    def delete(self, request, name: str):
        runtimes.wheelhouse_delete(user=request.user, name=name, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AppListApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(responses=AppOut(many=True))
    def get(self, request):
        return Response(app_out(request, selectors.app_list_for_user(request.user), many=True))

    @extend_schema(
        request={"multipart/form-data": PublishForm, "application/octet-stream": bytes},
        responses={
            201: PublishOut,
            400: OpenApiResponse(ERROR.response, description="The package is refused; the message says why."),
            409: ERROR,
            413: ERROR,
        },
        description="Publish an encrypted package: a new app, or a new version of an app you manage.",
    )
    def post(self, request):
        blob = read_uploaded_bytes(request._request, "package", settings.PRO_MAX_PACKAGE_BYTES, "package")
        make_latest = publish_make_latest(request._request.GET, request._request.POST)
        version = services.app_publish(user=request.user, blob=blob, make_latest=make_latest)
        body = {**app_out(request, version.app), "published_version": version.version}
        return Response(body, status=status.HTTP_201_CREATED)


class AppDetailApi(APIView):
    parser_classes = JSON_BODY

    @extend_schema(responses=AppOut)
    def get(self, request, name: str):
        return Response(app_out(request, selectors.app_get_for_user(request.user, name)))

    @extend_schema(request=AppPatch, responses=AppOut)
    def patch(self, request, name: str):
        app = selectors.app_get_for_user(request.user, name)
        given = AppPatch(data=request.data)
        given.is_valid(raise_exception=True)
        services.app_update(user=request.user, app=app, **given.validated_data)
        return Response(app_out(request, app))

    @extend_schema(responses={204: None, 409: ERROR})
    def delete(self, request, name: str):
        services.app_delete(user=request.user, app=selectors.app_get_for_user(request.user, name))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AppIconApi(APIView):
    @extend_schema(responses={(200, "image/*"): bytes})
    def get(self, request, name: str):
        app = selectors.app_get_for_user(request.user, name)
        handle = selectors.app_icon_open(app)
        return FileResponse(handle, filename=app.icon_path.rsplit("/", 1)[-1])  # small: a sync file response is fine


class VersionListApi(APIView):
    @extend_schema(responses=VersionOut(many=True))
    def get(self, request, name: str):
        app = selectors.app_get_for_user(request.user, name)
        return Response(VersionOut(selectors.versions_for_user(request.user, app), many=True).data)


class VersionDetailApi(APIView):
    parser_classes = JSON_BODY

    @extend_schema(responses=VersionOut)
    def get(self, request, name: str, version: str):
        app = selectors.app_get_for_user(request.user, name)
        return Response(VersionOut(selectors.version_get_for_user(request.user, app, version)).data)

    @extend_schema(request=VersionPatch, responses={200: VersionOut, 409: ERROR})
    def patch(self, request, name: str, version: str):
        app = selectors.app_get_for_user(request.user, name)
        found = selectors.version_get_for_user(request.user, app, version)
        given = VersionPatch(data=request.data)
        given.is_valid(raise_exception=True)
        if "hidden" in given.validated_data:
            services.version_set_hidden(user=request.user, version=found, hidden=given.validated_data["hidden"])
        if given.validated_data.get("latest"):
            services.app_set_latest(user=request.user, version=found)
        found.app.refresh_from_db()
        return Response(VersionOut(found).data)

    @extend_schema(responses={204: None, 409: ERROR})
    def delete(self, request, name: str, version: str):
        app = selectors.app_get_for_user(request.user, name)
        services.version_delete(user=request.user, version=selectors.version_get_for_user(request.user, app, version))
        return Response(status=status.HTTP_204_NO_CONTENT)


class GrantListApi(APIView):
    parser_classes = JSON_BODY

    def _app(self, request, name: str):
        app = selectors.app_get_for_user(request.user, name)
        services.app_require_manager(request.user, app)
        return app

    @extend_schema(responses=GrantOut(many=True))
    def get(self, request, name: str):
        app = self._app(request, name)
        return Response(GrantOut(selectors.grants_of(app), many=True).data)

    @extend_schema(request=GrantIn, responses={201: GrantOut})
    def post(self, request, name: str):
        app = self._app(request, name)
        given = GrantIn(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        grant = services.grant_access(
            user=request.user, app=app, level=data["level"], username=data["username"], group_name=data["group"]
        )
        return Response(GrantOut(grant).data, status=status.HTTP_201_CREATED)


class GrantDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, name: str, grant_id: int):
        app = selectors.app_get_for_user(request.user, name)
        services.grant_revoke(user=request.user, app=app, grant_id=grant_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
