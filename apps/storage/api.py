from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from pro_portal.openapi import ERROR
from pro_portal.streaming import file_download
from pro_portal.uploads import declared_length

from . import services


class EntryOut(serializers.Serializer):
    name = serializers.CharField()
    path = serializers.CharField()
    is_folder = serializers.BooleanField()
    size = serializers.IntegerField(allow_null=True)
    modified = serializers.DateTimeField(allow_null=True)


class FolderOut(serializers.Serializer):
    path = serializers.CharField()
    entries = EntryOut(many=True)


PATH = OpenApiParameter(
    "path", OpenApiTypes.STR, OpenApiParameter.PATH, description="A storage path; end it with / to list a folder."
)


class StorageApi(APIView):
    """Files in storage: GET a file (streamed) or a folder listing (path ending in /), PUT a file or
    a new folder (path ending in /), DELETE a file."""

    parser_classes = []

    @extend_schema(
        parameters=[PATH],
        responses={(200, "application/json"): FolderOut, (200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    def get(self, request, path: str = ""):
        if path == "" or path.endswith("/"):
            entries = services.storage_list(user=request.user, path=path)
            return Response(FolderOut({"path": services.normalize_path(path), "entries": entries}).data)
        handle, size = services.storage_open(user=request.user, path=path)
        return file_download(handle, size, path.rsplit("/", 1)[-1])

    @extend_schema(
        parameters=[PATH],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={201: EntryOut, 403: ERROR, 409: ERROR, 413: ERROR},
        description="Store the body at the path; a path ending in / creates that (empty) folder instead. "
        "An app's shared folder (apps/<app>/data/) takes changes from its collaborators, owner and admins "
        "(403 for viewers); the platform's own folders take none (403, admins too).",
    )
    def put(self, request, path: str = ""):
        if path.endswith("/"):
            entry = services.storage_make_folder(user=request.user, path=path)
            return Response(EntryOut(entry).data, status=status.HTTP_201_CREATED)
        entry = services.storage_put(
            user=request.user, path=path, stream=request._request, declared_length=declared_length(request._request)
        )
        return Response(EntryOut(entry).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[PATH], responses={204: None, 403: ERROR})
    def delete(self, request, path: str = ""):
        services.storage_delete(user=request.user, path=path)
        return Response(status=status.HTTP_204_NO_CONTENT)
