"""The search endpoints of the SKA DPD API: status, search, filter, grid config,
column labels, layout.

Explicit APIViews, because their shapes are fixed by the reference (2.1,
2.3-2.7). Matching and sorting live in dpd.search; visibility comes from
dpd.access for every query; these views parse, call and shape.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.services import annotated_product_uids, annotations_changed_at
from dlm_bridge import services as dlm
from dpd import remembered_counts, search, search_rows
from dpd.access import (
    caller_groups,
    is_open_product_access,
    sees_placeholders,
    visible_products,
)
from dpd.api import column_labels
from dpd.api.parsers import AnyContentTypeJSONParser, JSONParser
from dpd.api.product_serializers import (
    BoundedJSONParser,
    ErrorSerializer,
    Unprocessable,
    json_body,
)
from dpd.api.search_serializers import (
    FilterRequestSerializer,
    SearchRequestSerializer,
)
from dpd.api.table_renderers import CSVRenderer, TSVRenderer
from dpd.authentication import ReadOnlyPost
from dpd.compression import KeptBody
from dpd.models import DataProduct
from dpd.status import api_status

logger = logging.getLogger(__name__)

# A plain list's headers: how many products match, and whether the list (cut at
# SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT rows) leaves some out. Headers,
# because the body is the list the dashboard reads.
TOTAL_HEADER = "X-Total-Count"
TRUNCATED_HEADER = "X-Truncated"
ROW_SCHEMA = {"type": "object", "additionalProperties": True, "required": ["id", "uid"]}
ROWS_SCHEMA = {"type": "array", "items": ROW_SCHEMA}
EXAMPLE_ROW = {
    "interface": "http://schema.skao.int/ska-data-product-meta/0.1",
    "execution_block": "eb-m001-20221212-12345",
    "context.observer": "AIV_person_1",
    "config.processing_block": "pb-m001-20221212-12345",
    "files": [
        {
            "crc": "2a890fbe",
            "description": "This is test file 1",
            "path": "ska-sub-system/scan_id_1/pb_id_1/TestDataFile1.txt",
            "size": 19,
            "status": "done",
        }
    ],
    "date_created": "2022-12-12",
    "dataproduct_file": "eb-m001-20221212-12345",
    "metadata_file": "eb-m001-20221212-12345/ska-data-product.yaml",
    "metadata_store_name": "shared",
    "uid": "c05bce72-4a6e-234f-06e7-02dc92aba3f4",
    "id": 1,
}
PAGED_SEARCH_SCHEMA = {
    "type": "object",
    "required": ["data", "total", "more_results"],
    "properties": {
        "data": ROWS_SCHEMA,
        "total": {"type": "integer", "description": "All matching open products."},
        "more_results": {"type": "boolean", "description": "Whether rows follow this page."},
    },
}
PAGED_FILTER_SCHEMA = {
    "type": "object",
    "required": ["data", "total"],
    "properties": {
        "data": ROWS_SCHEMA,
        "total": {"type": "integer", "description": "All matching visible products."},
    },
}
MISSING_FILTER_BODY = (
    "The request body is missing; send the grid's JSON object ({} for every visible product)."
)
TABLE_RENDERERS = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer, TSVRenderer]


def _wants_json(request) -> bool:
    """Whether the answer is plain JSON, which is spliced from stored row texts
    (dpd.search_rows) instead of rendered row by row; the table renderers and
    the browsable API (and an indented JSON) get row dicts."""
    renderer, media_type = request.accepted_renderer, request.accepted_media_type or ""
    return type(renderer) is JSONRenderer and "indent" not in media_type


def _rows_response(rows: list, as_text: bool, **envelope) -> HttpResponse | Response:
    """The plain list of rows, or `{"data": rows, **envelope}` when paged."""
    if not as_text:
        return Response({"data": rows, **envelope} if envelope else rows)
    body = "[" + ",".join(rows) + "]"
    if envelope:
        extra = "".join(f',"{name}":{json.dumps(value)}' for name, value in envelope.items())
        body = '{"data":' + body + extra + "}"
    return HttpResponse(body.encode(), content_type="application/json")


def _plain_list(
    rows_of: Callable[[], list],
    as_text: bool,
    limit: int,
    matching: Callable[[], QuerySet[DataProduct]],
    asked: tuple,
    remembered: remembered_counts.Remembered | None = None,
) -> HttpResponse | Response:
    """The plain list, with the total and whether the cap cut it in headers.

    Only a full list is counted (a COUNT(*) of the matches); a shorter one is
    everything. `asked` names the request (what it matches and who may see
    it), for the count's reuse. With `remembered`, a full JSON list is kept
    whole (Remembered.answer): the dashboard's first load at the deployed
    cap of 10,000 rows is 20 MB of row texts, 200 ms to read at 1,000,000
    products, and every dashboard opening asks the same. It is kept with
    its gzip (dpd.compression.KeptBody), which browsers take.
    """

    def counted(rows: list) -> int:
        if len(rows) < limit:
            return len(rows)
        # max(): products removed since the rows were read cannot make it less.
        return max(len(rows), _remembered_count(matching, asked))

    if as_text and remembered is not None:
        built = []

        def listed() -> tuple[KeptBody, int, int]:
            rows = rows_of()
            built.append(True)
            return KeptBody(_rows_response(rows, True).content), len(rows), counted(rows)

        body, shown, total = remembered.answer(
            matching(), listed, keep=lambda kept: kept[1] >= limit, also=(limit, settings.PVCNAME)
        )
        if built:  # read for this request: compressed as it goes, if at all
            response = HttpResponse(body.body, content_type="application/json")
        else:
            response = body.response("application/json")
    else:
        rows = rows_of()
        response = _rows_response(rows, as_text)
        shown, total = len(rows), counted(rows)
    response[TOTAL_HEADER] = str(total)
    response[TRUNCATED_HEADER] = "true" if total > shown else "false"
    if total > shown:
        logger.info(
            "plain list capped: %d of %d matching products "
            "(SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT=%d; paging gives the rest)",
            shown,
            total,
            limit,
        )
    return response


def _remembered_count(matching: Callable[[], QuerySet[DataProduct]], asked: tuple) -> int:
    """COUNT(*) of the matches, reused by the same request (`asked`: what it
    matches and who may see it) and counted by one thread at a time
    (dpd.remembered_counts says why)."""
    digest = hashlib.sha256(repr(asked).encode()).hexdigest()
    return remembered_counts.remembered(
        f"dpd:plain-list-total:{digest}", lambda: matching().count()
    )


def _visibility(request) -> tuple:
    """What decides which products the caller sees (dpd.access): groups,
    whether SDP's placeholders show, open product access."""
    groups = caller_groups(request)
    return (
        None if groups is None else tuple(sorted(groups)),
        sees_placeholders(request),
        is_open_product_access(request),
    )


PLAIN_LIST_HEADERS = (
    f"Without paging fields the answer is the plain list, at most "
    f"SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT rows (10,000 by default); its "
    f"`{TOTAL_HEADER}` header gives the number of all matching products and "
    f"`{TRUNCATED_HEADER}` (`true`/`false`) whether the list leaves some out."
)


PLAIN_LIST_HEADER_PARAMETERS = [
    OpenApiParameter(
        TOTAL_HEADER,
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=[200],
        description="On a plain list: the number of all matching products.",
    ),
    OpenApiParameter(
        TRUNCATED_HEADER,
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200],
        enum=["true", "false"],
        description="On a plain list: whether the row cap left matching products out.",
    ),
]


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


class StatusView(APIView):
    # Probes and the dashboard poll it: no authentication, no throttling, no
    # database access beyond the status queries themselves.
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []

    @extend_schema(
        operation_id="status",
        summary="Health, indexing progress and store status",
        description="Always 200, also while indexing or with the database down "
        "(then `metadata_store_status.db_status.running` is false and `error` says why).",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="The v0.17 shape.")},
        examples=[
            OpenApiExample(
                "Running",
                value={
                    "api_running": True,
                    "api_version": "0.1.0",
                    "startup_time": "2026-03-02T10:15:04.118203+00:00",
                    "available_data_stores": ["shared"],
                    "metadata_store_status": {
                        "db_status": {"configured": True, "running": True},
                        "last_metadata_update_time": "2026-03-02T10:15:05.011000+00:00",
                        "number_of_dataproducts": 15,
                    },
                },
                response_only=True,
            )
        ],
    )
    def get(self, request):
        return Response(api_status())


class DataProductSearchView(ReadOnlyPost, APIView):
    parser_classes = [BoundedJSONParser]
    renderer_classes = TABLE_RENDERERS

    @extend_schema(
        operation_id="dataproductsearch",
        summary="Search open products by date range and key:value pairs",
        description=(
            "Open products only (no access_group), newest first (ties by metadata_file, uid). "
            "Dates are inclusive; an unparseable date is a 400. "
            + PLAIN_LIST_HEADERS
            + " With `start`/`count` (or `offset`/`limit`) it is "
            "`{data, total, more_results}`, `count` capped at SEARCH_MAX_PAGE_SIZE. "
            "`Accept: text/csv` or `text/tab-separated-values` gives the rows as a table."
        ),
        request=SearchRequestSerializer,
        parameters=PLAIN_LIST_HEADER_PARAMETERS,
        responses={
            200: OpenApiResponse(
                {"oneOf": [ROWS_SCHEMA, PAGED_SEARCH_SCHEMA]},
                description="The rows, or a page of them.",
            ),
            400: _error('"Invalid search key pair." or an unparseable date.'),
            422: _error("Malformed JSON, or a field of the wrong type."),
        },
        examples=[
            OpenApiExample(
                "One execution block",
                value={
                    "start_date": "2001-12-12",
                    "end_date": "2032-12-12",
                    "key_value_pairs": ["execution_block:eb-m001-20221212-12345"],
                },
                request_only=True,
            ),
            OpenApiExample(
                "Paged",
                value={"start_date": "2020-01-01", "start": 0, "count": 10},
                request_only=True,
            ),
            OpenApiExample("Rows", value=[EXAMPLE_ROW], response_only=True),
            OpenApiExample(
                "A pair without a colon",
                value={"detail": search.INVALID_KEY_PAIR},
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    def post(self, request):
        body = json_body(request)
        try:
            data = SearchRequestSerializer.validated(body)
        except ValidationError as exc:
            raise Unprocessable(exc.detail) from None
        start, end = data["start_bound"], data["end_bound"]
        placeholders = sees_placeholders(request)
        # DLM rows: none while the DLM does not answer (issue 19).
        hidden = dlm.hidden_sources(include_retired=dlm.pairs_ask_for_retired(data["pairs"]))

        def matching() -> QuerySet[DataProduct]:
            # Built only when the window is not the whole answer: building the
            # pairs' conditions alone is ~0.16 ms of ORM work per request.
            return search.search_products(
                start_date=start,
                end_date=end,
                pairs=data["pairs"],
                placeholders=placeholders,
                hidden_sources=hidden,
            )

        as_text = _wants_json(request)
        page = SearchRequestSerializer.page(body, data)
        offset, size = page or (0, settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT)
        found = search_rows.window_rows(
            start,
            end,
            data["pairs"],
            offset + size,
            placeholders=placeholders,
            hidden_sources=hidden,
        )
        if found is not None:
            rows = search_rows.window_page(found, offset, as_text=as_text)
            if page is not None:
                total = search_rows.total(
                    matching(), rows, offset, size, remembered_counts.Remembered().count
                )
        elif page is None and as_text and not data["pairs"]:
            rows = search_rows.range_page_texts(
                start, end, size, placeholders=placeholders, hidden_sources=hidden
            )
        elif page is None:
            rows = search_rows.fetch_page(matching(), offset, size, as_text=as_text)
        else:
            rows, total = search_rows.counted_page(
                matching(),
                offset,
                size,
                as_text=as_text,
                remembered=remembered_counts.Remembered(),
            )
        if page is None:
            # Open products only, whoever asks: placeholders aside.
            pairs, hidden_names = tuple(data["pairs"]), tuple(sorted(hidden))
            asked = ("search", start, end, pairs, placeholders, hidden_names)
            return _plain_list(lambda: rows, as_text, size, matching, asked)
        more = offset + len(rows) < total
        return _rows_response(rows, as_text, total=total, more_results=more)


class FilterDataProductsView(ReadOnlyPost, APIView):
    parser_classes = [JSONParser, AnyContentTypeJSONParser]
    renderer_classes = TABLE_RENDERERS

    @extend_schema(
        operation_id="filterdataproducts",
        summary="The dashboard grid's rows: filter model, search panel, sort, page",
        description=(
            "Products visible to the caller. `filterModel.items` combine with its "
            "`logicOperator`; `searchPanelOptions.items` are ANDed with them. Unknown fields "
            "and operators are ignored. With `page` or `pageSize` the answer is "
            "`{data, total}` (pageSize capped at SEARCH_MAX_PAGE_SIZE). " + PLAIN_LIST_HEADERS
        ),
        request={"application/json": FilterRequestSerializer},
        parameters=PLAIN_LIST_HEADER_PARAMETERS,
        responses={
            200: OpenApiResponse(
                {"oneOf": [ROWS_SCHEMA, PAGED_FILTER_SCHEMA]},
                description="A page of rows and the total, or the plain list.",
            ),
            400: _error("Malformed JSON, or a body of the wrong shape."),
        },
        examples=[
            OpenApiExample(
                "As the dashboard sends it",
                value={
                    "filterModel": {
                        "items": [
                            {
                                "field": "execution_block",
                                "operator": "contains",
                                "id": 51411,
                                "value": "m001",
                            }
                        ],
                        "logicOperator": "and",
                        "quickFilterValues": [],
                        "quickFilterLogicOperator": "and",
                    },
                    "searchPanelOptions": {
                        "items": [
                            {
                                "field": "date_created",
                                "operator": "onOrAfter",
                                "value": "2020-01-01",
                            },
                            {
                                "field": "metadata_store_name",
                                "operator": "equals",
                                "value": "shared",
                            },
                        ],
                        "logicOperator": "and",
                    },
                    "sortModel": [{"field": "date_created", "sort": "desc"}],
                    "page": 0,
                    "pageSize": 25,
                },
                request_only=True,
            ),
            OpenApiExample("A page", value={"data": [EXAMPLE_ROW], "total": 1}, response_only=True),
        ],
    )
    def post(self, request):
        data = request.data
        if request.stream is None:  # DRF's mark of an empty body
            raise ParseError(MISSING_FILTER_BODY)
        data = FilterRequestSerializer.validated(data)
        grid = data.get("filterModel") or {}
        panel = data.get("searchPanelOptions") or {}
        # DLM rows: none while the DLM does not answer (issue 19).
        hidden = dlm.hidden_sources(
            include_retired=dlm.filter_asks_for_retired(
                [*(grid.get("items") or []), *(panel.get("items") or [])]
            )
        )
        # Its total, order, page marks or whole list are remembered
        # (dpd.remembered_counts); its annotation filter's matches change
        # with the annotations.
        remembered = remembered_counts.Remembered(also_changed=annotations_changed_at)
        products = search.filter_products(
            visible_products(request, hidden_sources=hidden),
            filter_items=grid.get("items") or [],
            logic_operator=(grid.get("logicOperator") or "and").lower(),
            panel_items=panel.get("items") or [],
            sort_model=data.get("sortModel") or [],
            annotated_uids=annotated_product_uids,
            remembered=remembered,
        )
        as_text = _wants_json(request)
        page = FilterRequestSerializer.page_bounds(data)
        if page is None:
            limit = settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT
            # The body and what the caller may see decide the matches.
            asked = (
                "filter",
                json.dumps(data, sort_keys=True, default=str),
                _visibility(request),
                tuple(sorted(hidden)),
            )
            return _plain_list(
                lambda: search_rows.fetch_page(products, 0, limit, as_text=as_text),
                as_text,
                limit,
                lambda: products,
                asked,
                remembered,
            )
        offset, size = page
        rows, total = search_rows.counted_page(
            products, offset, size, as_text=as_text, remembered=remembered
        )
        return _rows_response(rows, as_text, total=total)


class MuiDataGridConfigView(APIView):
    throttle_classes = []

    @extend_schema(
        operation_id="muidatagridconfig",
        summary="The grid's columns",
        description="The nine fixed columns (visible), then every other flattened field of "
        "the catalogue (hidden), with a MUI column `type` and `filterable`.",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="`{columns: [...]}`")},
        examples=[
            OpenApiExample(
                "Columns",
                value={
                    "columns": [
                        {
                            "field": "execution_block",
                            "headerName": "Execution Block",
                            "width": 250,
                            "hide": False,
                            "type": "string",
                            "filterable": True,
                        }
                    ]
                },
                response_only=True,
            )
        ],
    )
    def get(self, request):
        return Response({"columns": search.grid_columns()})


class HumanReadableView(APIView):
    authentication_classes = []
    throttle_classes = []

    @extend_schema(
        operation_id="humanreadable",
        summary="Column labels and tooltips, for any language code",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="label map")},
        examples=[
            OpenApiExample(
                "English",
                value={
                    "execution_block": "Execution Block",
                    "_tooltip": {"execution_block": column_labels.TOOLTIPS["execution_block"]},
                },
                response_only=True,
            )
        ],
    )
    def get(self, request, lng: str):
        return Response(column_labels.labels(lng))


class LayoutView(APIView):
    authentication_classes = []
    throttle_classes = []

    @extend_schema(
        operation_id="layout",
        summary="The legacy default layout (v0.13)",
        responses={
            200: OpenApiResponse(
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "width": {"type": "integer"}},
                    },
                },
                description="[{name, width}]",
            )
        },
        examples=[
            OpenApiExample(
                "Layout", value=[{"name": "execution_block", "width": 250}], response_only=True
            )
        ],
    )
    def get(self, request):
        return Response(column_labels.LAYOUT)
