"""The product endpoints of the SKA DPD API: metadata, download, ingest, re-index.

Explicit APIViews, because their shapes are fixed by the reference (2.2,
2.8-2.11). Every lookup goes through `visible_products(request)`, so a product
the caller may not see answers exactly like one that does not exist.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from dlm_bridge import services as dlm
from dpd import download_slots, services, tar_process
from dpd.access import visible_products
from dpd.api.download_selection import check_size, select_products
from dpd.api.product_serializers import (
    MISSING_IDENTIFIER,
    BadRequest,
    BoundedJSONParser,
    ErrorSerializer,
    IngestProductSerializer,
    IngestResultSerializer,
    ProductIdentifierSerializer,
    Unprocessable,
    body_object,
)
from dpd.authentication import ReadOnlyPost
from dpd.download import DownloadNotFound, plan_download
from dpd.http_ranges import Unsatisfiable, requested_range
from dpd.links import PRODUCT_PAGE_HEADER, product_page_link
from dpd.metadata import MetadataError
from dpd.permissions import CanIngest, CanReindex, ProductReadAccess
from dpd.tar_layout import archive_layout
from dpd.tar_stream import stream_archive
from indexing.services import IndexingBusy, request_reindex

REINDEX_ACCEPTED = "Metadata re-index request has been added to the background tasks"
REINDEX_BUSY = "A re-index is already in progress."
INGEST_PRODUCT_OK = "New data product received and search store index updated"
INGEST_METADATA_OK = "New data product metadata received and saved in the DPD datastore."

UID_7 = "6a11ddaa-6b45-6759-47e7-a5abd5105b0e"


class DownloadsBusy(APIException):
    """503 with Retry-After (DRF's handler sends `wait` as that header)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.wait = settings.DPD_DOWNLOADS_RETRY_AFTER_SECONDS


def _errors(*codes: int, **described: str) -> dict:
    """Error responses for the schema: every one is a `detail` body."""
    texts = {
        400: "Bad input; `detail` says what.",
        404: "No such product visible to the caller.",
        401: "Not signed in (ingest and re-index need a curator or a service account).",
        403: "Signed in without the permission (see docs/security.md).",
        413: "Body over METADATA_MAX_BYTES.",
        422: "The body is not valid JSON or fails the model.",
        416: "The range starts past the end; `Content-Range: bytes */LENGTH`.",
        503: "Every download slot is taken (DPD_DOWNLOADS_PER_PROCESS, DPD_DOWNLOADS_TOTAL); "
        "`Retry-After` says when to try again.",
    }
    return {
        code: OpenApiResponse(ErrorSerializer, description=described.get(f"e{code}", texts[code]))
        for code in codes
    }


def identifier_from(request) -> tuple:
    """(uid or None, execution_block or None) from a metadata/download body."""
    serializer = ProductIdentifierSerializer(data=body_object(request))
    if not serializer.is_valid():
        raise Unprocessable(serializer.errors)
    return serializer.validated_data.get("uid"), serializer.validated_data["execution_block"]


IDENTIFIER_EXAMPLES = [
    OpenApiExample("By uid", value={"uid": UID_7}, request_only=True),
    OpenApiExample(
        "As the dashboard sends it",
        value={
            "execution_block": "eb-notebook-20240201-54576",
            "uid": "7cfae145-92be-9c4d-5f4b-d1fdc6ebb89a",
            "relativePathName": "eb-notebook-20240201-54576/ska-sdp/pb-notebookvr-20240201-54576",
            "metaDataFile": "eb-notebook-20240201-54576/ska-sdp/pb-notebookvr-20240201-54576/"
            "ska-data-product.yaml",
        },
        request_only=True,
    ),
    OpenApiExample(
        "Neither uid nor execution_block",
        value={"detail": MISSING_IDENTIFIER},
        response_only=True,
        status_codes=["400"],
    ),
]


class DataProductMetadataView(ReadOnlyPost, APIView):
    parser_classes = [BoundedJSONParser]
    permission_classes = [ProductReadAccess]

    @extend_schema(
        operation_id="dataproductmetadata",
        summary="One product's metadata document",
        description=(
            "The nested metadata document plus its derived fields (`date_created`, "
            "`dataproduct_file`, `metadata_file`, `metadata_store_name`, `uid`); nulls are "
            "kept. Looked up by `uid`: an `execution_block` alone satisfies the identifier "
            "check but finds nothing (404), as in the SKA DPD API."
        ),
        request=ProductIdentifierSerializer,
        parameters=[PRODUCT_PAGE_HEADER],
        responses={
            200: OpenApiResponse(
                {"type": "object", "additionalProperties": True, "required": ["uid"]},
                description="The metadata document.",
            ),
            **_errors(400, 404, 413, 422),
        },
        examples=[
            *IDENTIFIER_EXAMPLES,
            OpenApiExample(
                "A product",
                value={
                    "interface": "http://schema.skao.int/ska-data-product-meta/0.1",
                    "execution_block": "eb-m005-20231031-12345",
                    "context": {
                        "observer": "AIV_person_1",
                        "intent": "Experimental run as part of XYZ-123",
                        "notes": "Running that signal from XX/YY/ZZ through again, things "
                        "look a bit flaky",
                    },
                    "config": {"processing_block": "pb-m004-20191031-12345"},
                    "files": [{"path": "ska-sub-system/scan_id_1/pb_id_1/TestDataFile1.txt"}],
                    "date_created": "2023-10-31",
                    "dataproduct_file": "eb-m005-20231031-12345",
                    "metadata_file": "eb-m005-20231031-12345/ska-data-product.yaml",
                    "metadata_store_name": "shared",
                    "uid": UID_7,
                },
                response_only=True,
                status_codes=["200"],
            ),
        ],
    )
    def post(self, request):
        uid, execution_block = identifier_from(request)
        if uid is None:
            raise NotFound(
                f"Data product not found: no data product with uid None "
                f"(execution_block {execution_block!r} alone does not select a product; "
                "send its uid)."
            )
        # DLM rows while the DLM answers, deleted and expired ones too (issue 19).
        hidden = dlm.hidden_sources(include_retired=True)
        visible = visible_products(request, hidden_sources=hidden)
        product = visible.filter(uid=uid).first()
        if product is None:
            raise NotFound(f"Data product not found: no data product with uid {uid}.")
        document = product.nested_document()
        if dlm.lists_copies(hidden) and (copies := product.dlm_copies(visible)):
            document["dlm_copies"] = copies
        return Response(document, headers=product_page_link(request, product.uid))


class DownloadView(ReadOnlyPost, APIView):
    parser_classes = [BoundedJSONParser]
    permission_classes = [ProductReadAccess]

    @extend_schema(
        operation_id="download",
        summary="A tar of a product, of an execution block, or of everything a search matches",
        description=(
            "An uncompressed tar built while it is sent, member names relative to the volume "
            "root, directories as entries, symlinks stored not followed, each file once, and "
            "last a `MANIFEST.sha256` member (the `sha256sum -c` format, names relative to its "
            "folder: the products' deepest common folder) listing every regular file. "
            "`uid` wins when both identifiers are given; without either, a /dataproductsearch "
            "body (`start_date`, `end_date`, `key_value_pairs`) or a /filterdataproducts "
            "filter model (`filterModel`, `searchPanelOptions`) sends every visible matching "
            "product with files in one archive, `dataproducts.tar`, or 413 over "
            "DPD_QUERY_DOWNLOAD_MAX_PRODUCTS or DPD_QUERY_DOWNLOAD_MAX_BYTES. `uid` or "
            "`execution_block` may also come as query parameters of a POST without a body "
            "(for `curl -C -`). Unknown products, products without files and folders gone "
            "from the volume are a 404 before any byte is sent. "
            "`Content-Length` is the exact length; `ETag` is strong and changes when any file "
            "does (name, size, mtime); `Range: bytes=N-` or `N-M` answers 206 with "
            "`Content-Range`, a range past the end 416 with `Content-Range: bytes */LENGTH`, "
            "and a malformed or multiple range, or an `If-Range` that is not the current ETag, "
            "the whole archive (200). A file changing during the download cuts the stream "
            "short of its length. A download lasts as long as the client "
            "takes to read it; a client that reads nothing for DPD_CLIENT_IDLE_TIMEOUT "
            "seconds is disconnected. Beyond the concurrent-download limits the answer is "
            "503 with `Retry-After`, before any byte."
        ),
        parameters=[
            OpenApiParameter("Range", OpenApiTypes.STR, OpenApiParameter.HEADER),
            OpenApiParameter("If-Range", OpenApiTypes.STR, OpenApiParameter.HEADER),
            OpenApiParameter("uid", OpenApiTypes.UUID, OpenApiParameter.QUERY),
            OpenApiParameter("execution_block", OpenApiTypes.STR, OpenApiParameter.QUERY),
        ],
        request=ProductIdentifierSerializer,
        responses={
            (200, "application/x-tar"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The tar stream."
            ),
            (206, "application/x-tar"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The bytes of the range asked for."
            ),
            **_errors(
                400,
                404,
                413,
                416,
                422,
                503,
                e413="Body over METADATA_MAX_BYTES, or a search download over its limits.",
            ),
        },
        examples=[
            *IDENTIFIER_EXAMPLES,
            OpenApiExample(
                "By execution block",
                value={"execution_block": "eb-test-20200325-00001"},
                request_only=True,
            ),
            OpenApiExample(
                "Everything a search matches",
                value={
                    "start_date": "2024-01-01",
                    "end_date": "2024-12-31",
                    "key_value_pairs": ["context.observer:AIV_person_1"],
                },
                request_only=True,
            ),
            OpenApiExample(
                "Everything a filter model matches",
                value={
                    "filterModel": {
                        "items": [
                            {"field": "execution_block", "operator": "contains", "value": "eb-m"}
                        ]
                    }
                },
                request_only=True,
            ),
            OpenApiExample(
                "Unknown product",
                value={"detail": "File not found: no data product with uid " + UID_7},
                response_only=True,
                status_codes=["404"],
            ),
        ],
    )
    def post(self, request):
        # The one place where the request becomes products (visibility included).
        selection = select_products(request)
        try:
            slot = download_slots.acquire()
        except download_slots.DownloadsBusy as exc:
            raise DownloadsBusy(str(exc)) from None
        early = None
        try:
            plan = plan_download(
                selection.products, filename=f"{selection.stem}.tar", asked=selection.asked
            )
            if request.headers.get("Range") is None:  # tar may read while the walk runs
                early = tar_process.early_tar(plan.root)
            layout = archive_layout(plan, early)
            check_size(selection, layout.size)
            wanted = requested_range(
                request.headers.get("Range"),
                request.headers.get("If-Range"),
                size=layout.size,
                etag=layout.etag,
            )
        except BaseException as exc:
            if early is not None:
                early.close()
            slot.release()
            if isinstance(exc, DownloadNotFound):
                raise NotFound(str(exc)) from None
            if isinstance(exc, Unsatisfiable):
                return _unsatisfiable(layout.size, layout.etag)
            raise
        # The stream needs no database, and may last hours: give this thread's
        # connection back now, or every download in flight would hold one
        # (2 workers x 32 downloads is past PostgreSQL's default 100). Not
        # inside a transaction (a test's), which closing would break.
        if not connection.in_atomic_block:
            connection.close()
        start, stop = (0, layout.size) if wanted is None else (wanted.start, wanted.stop)
        stream = download_slots.TrackedDownload(
            stream_archive(layout, start, stop, early=early),
            name=plan.filename,
            size=stop - start,
            slot=slot,
        )
        response = StreamingHttpResponse(stream, content_type="application/x-tar")
        if wanted is not None:
            response.status_code = status.HTTP_206_PARTIAL_CONTENT
            response["Content-Range"] = wanted.content_range(layout.size)
        response["Content-Length"] = str(stop - start)
        response["Accept-Ranges"] = "bytes"
        response["ETag"] = layout.etag
        response["Content-Disposition"] = content_disposition_header(True, plan.filename)
        return response


def _unsatisfiable(size: int, etag: str) -> Response:
    """416: the range starts at or past the end (RFC 9110 15.5.17)."""
    response = Response(
        {"detail": f"Range Not Satisfiable: the archive is {size} bytes long."},
        status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
    )
    response["Content-Range"] = f"bytes */{size}"
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    return response


INGEST_UID = "e38eb2bb-684f-de46-63ec-bd64deff6ff0"


class IngestNewDataProductView(APIView):
    parser_classes = [BoundedJSONParser]
    permission_classes = [CanIngest]

    @extend_schema(
        operation_id="ingestnewdataproduct",
        summary="Index one product folder now",
        description=(
            "Reads `<relativePathName>` (when it exists inside the volume) or "
            "`<execution_block>` under the volume root, its metadata file, and stores the "
            "product with the uid the indexer gives it. Paths that leave the volume are 400."
        ),
        request=IngestProductSerializer,
        responses={
            201: IngestResultSerializer,
            **_errors(
                400,
                401,
                403,
                404,
                413,
                422,
                e400="A path leaving the volume, or invalid YAML/metadata.",
                e404="No metadata file there.",
            ),
        },
        examples=[
            OpenApiExample(
                "A top-level product",
                value={"execution_block": "eb-test-20200325-00001"},
                request_only=True,
            ),
            OpenApiExample(
                "A sub-product",
                value={
                    "execution_block": "eb-notebook-20240201-54576",
                    "relativePathName": "eb-notebook-20240201-54576/ska-sdp/"
                    "pb-notebookvr-20240201-54576",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Ingested",
                value={"status": "success", "message": INGEST_PRODUCT_OK, "uid": INGEST_UID},
                response_only=True,
                status_codes=["201"],
            ),
            OpenApiExample(
                "Escaping the volume",
                value={"detail": "'../etc' contains '..'; give a path inside the volume"},
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    def post(self, request):
        serializer = IngestProductSerializer(data=body_object(request))
        if not serializer.is_valid():
            raise Unprocessable(serializer.errors)
        try:
            product = services.product_ingest_request(
                serializer.validated_data.get("execution_block"),
                serializer.validated_data.get("relativePathName"),
            )
        except services.MetadataFileMissing as exc:
            raise NotFound(str(exc)) from None
        except (services.UnsafePath, services.InvalidMetadataFile) as exc:
            raise BadRequest(str(exc)) from None
        return Response(
            {"status": "success", "message": INGEST_PRODUCT_OK, "uid": str(product.uid)},
            status=status.HTTP_201_CREATED,
        )


class IngestNewMetadataView(APIView):
    parser_classes = [BoundedJSONParser]
    permission_classes = [CanIngest]

    @extend_schema(
        operation_id="ingestnewmetadata",
        summary="Store a metadata document as a product without files",
        description=(
            "Any JSON object with a string `execution_block`. `date_created`, "
            '`dataproduct_file`, `metadata_file` (both "None") and `uid` (the hash of '
            '"<execution_block>:None") are derived and overwrite same-named body fields; '
            "posting the same execution block again updates the same product."
        ),
        request={"application/json": {"type": "object", "additionalProperties": True}},
        responses={
            201: IngestResultSerializer,
            **_errors(
                400, 401, 403, 413, 422, e400="No usable execution_block, or a document too deep."
            ),
        },
        examples=[
            OpenApiExample(
                "A minimal document",
                value={
                    "interface": "http://schema.skao.int/ska-data-product-meta/0.1",
                    "execution_block": "eb-test-20191031-99999",
                    "context": {},
                    "config": {},
                    "files": [],
                    "obscore": {},
                },
                request_only=True,
            ),
            OpenApiExample(
                "Stored",
                value={
                    "status": "success",
                    "message": INGEST_METADATA_OK,
                    "uid": "aa777038-1179-7430-b4c4-01b3afa5d14e",
                },
                response_only=True,
                status_codes=["201"],
            ),
        ],
    )
    def post(self, request):
        try:
            product = services.product_ingest_metadata(body_object(request))
        except MetadataError as exc:
            raise BadRequest(f"Invalid metadata: {exc}") from None
        return Response(
            {"status": "success", "message": INGEST_METADATA_OK, "uid": str(product.uid)},
            status=status.HTTP_201_CREATED,
        )


class ReindexDataProductsView(APIView):
    permission_classes = [CanReindex]
    # GET starts a run (as upstream); HEAD must not (link checkers, proxies).
    http_method_names = ["get", "options"]

    @extend_schema(
        operation_id="reindexdataproducts",
        summary="Start a re-index of the volume in the background",
        description=(
            "202 with the SKA DPD API's JSON string; the new run's resource is in the "
            "`Location` header when one was created. 409 while a run is in progress."
        ),
        request=None,
        responses={
            202: OpenApiResponse(OpenApiTypes.STR, description="The request was queued."),
            **_errors(401, 403),
            409: OpenApiResponse(ErrorSerializer, description="A run is in progress."),
        },
        examples=[
            OpenApiExample(
                "Queued", value=REINDEX_ACCEPTED, response_only=True, status_codes=["202"]
            ),
            OpenApiExample(
                "Busy", value={"detail": REINDEX_BUSY}, response_only=True, status_codes=["409"]
            ),
        ],
    )
    def get(self, request):
        try:
            ticket = request_reindex("api")
        except IndexingBusy:
            return Response({"detail": REINDEX_BUSY}, status=status.HTTP_409_CONFLICT)
        response = Response(REINDEX_ACCEPTED, status=status.HTTP_202_ACCEPTED)
        if ticket.run_id is not None:
            response["Location"] = reverse("index-run-detail", kwargs={"pk": ticket.run_id})
        return response
