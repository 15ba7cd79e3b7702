"""The catalogue: one row per data product, from the volume or from the API."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.functions import Lower

from dpd.metadata import NO_FOLDER, ProductMetadata, flatten
from dpd.search_sort import sort_indexes
from dpd.search_text import (
    GS,
    RS,
    SIGNATURE_BITS,
    US,
    any_of_regex,
    build_search_text,
    field_values,
    like_as_regex,
    row_field_types,
    signature,
)


class ExecutionBlockSearchText(models.Func):
    """execution_block as the search text holds it (separators made spaces,
    dpd.search_text.clean): what the grid's execution_block filters compare,
    folded into a column of its own (DataProduct.execution_block_folded).

    One expression with its SQL written out, not a chain of three Replace()
    of two Value()s each (migration 0008 made the index of that time this one
    node; the ORM copies every node of an expression whenever a query
    resolves it).
    """

    template = f"REPLACE(REPLACE(REPLACE(%(expressions)s, '{GS}', ' '), '{RS}', ' '), '{US}', ' ')"
    output_field = models.TextField()

    def __init__(self) -> None:
        super().__init__(models.F("execution_block"))


class FoldedText(models.TextField):
    """A text the database keeps lower-cased; `like` compares it with a LIKE
    pattern the database lower-cases the same way."""


@FoldedText.register_lookup
class FoldedLike(models.Lookup):
    """`column LIKE LOWER(pattern)` (dpd.search_text.like_pattern): the
    case-insensitive test of the grid's filters, folded by PostgreSQL's
    lower() on both sides.

    Against the regular expression on the unfolded text it served before
    (`~*`), the grid's paged execution_block filter costs PostgreSQL 1.9
    instead of 2.6 ms at 100,000 products: the trigram index's ~1,000
    candidates are each rechecked, and LIKE on a stored text is a
    fraction of a regular expression on a computed one (docs/api.md).

    SQLite's LOWER() and LIKE fold ASCII letters only, so there the pattern
    is a case-insensitive regular expression for Python's `re` instead
    (Django's REGEXP), which folds every letter, as PostgreSQL does.
    """

    lookup_name = "like"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} LIKE LOWER({rhs})", [*lhs_params, *rhs_params]

    def as_sqlite(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} REGEXP %s", [*lhs_params, like_as_regex(self.rhs)]


@FoldedText.register_lookup
class FoldedAnyOf(models.Lookup):
    """`column = ANY(lower-cased values)`: the grid's isAnyOf as one condition,
    one array parameter, whatever the number of values (an OR of one LIKE per
    value was 1,000 nested conditions at 1,000 values: SQLite refused the
    query, "Expression tree is too large"). PostgreSQL lower-cases the values
    as it does the column (FoldedLike) and reads the column's trigram index
    once per value in one bitmap scan.

    SQLite: one case-insensitive regular expression of the alternatives, for
    FoldedLike's reason (SQLite's LOWER() folds ASCII letters only).
    """

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        sql = f"{lhs} = ANY(ARRAY(SELECT LOWER(v) FROM UNNEST(%s::text[]) AS v))"
        return sql, [*lhs_params, list(self.rhs)]

    def as_sqlite(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} REGEXP %s", [*lhs_params, any_of_regex(self.rhs)]


class FieldValuesField(models.Field):
    """dpd.search_text.field_values(): an array of text on PostgreSQL (a GIN
    index answers `&&` from its entries, no recheck of the row), a JSON array
    elsewhere (SQLite reads it with json_each)."""

    description = "Folded row fields"

    def db_type(self, connection) -> str:
        return "text[]" if connection.vendor == "postgresql" else "text"

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None or connection.vendor == "postgresql":
            return value
        return json.dumps(list(value), ensure_ascii=False)

    def from_db_value(self, value, expression, connection):
        return json.loads(value) if isinstance(value, str) else value


@FieldValuesField.register_lookup
class HasAnyFieldValue(models.Lookup):
    """Some element equal to one of the given ones (dpd.search_text.field_value,
    present_value): the grid's equals, isAnyOf and isEmpty on a row field."""

    lookup_name = "has_any"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} && %s::text[]", [*lhs_params, list(self.rhs)]

    def as_sqlite(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        sql = (
            f"EXISTS (SELECT 1 FROM json_each({lhs}) AS held "
            "WHERE held.value IN (SELECT value FROM json_each(%s)))"
        )
        return sql, [*lhs_params, json.dumps(list(self.rhs), ensure_ascii=False)]


class SignatureField(models.Field):
    """dpd.search_text.signature(): a bit string of fixed width on PostgreSQL,
    where the key:value window tests it with `&`; its text elsewhere (SQLite
    has no window and never tests it)."""

    description = "Search text signature"

    def db_type(self, connection) -> str:
        return f"bit({SIGNATURE_BITS})" if connection.vendor == "postgresql" else "text"


class DataProductQuerySet(models.QuerySet):
    def in_display_order(self) -> DataProductQuerySet:
        """Newest first; ties broken deterministically (reference 3.4 [rec])."""
        return self.order_by("-date_created", "metadata_file", "uid")


class DataProduct(models.Model):
    class Source(models.TextChoices):
        VOLUME = "volume", "Volume"
        API = "api", "API ingest"
        # A placeholder for an active SDP processing block whose execution
        # block has no product yet (dpd.sdp_sync); no files, no access group.
        SDP = "sdp", "SDP placeholder"
        # Mirrors of the DLM's items (dlm_bridge.sync): listed while the DLM
        # answers; deleted or expired ones only when a filter asks for them.
        DLM = "dlm", "DLM item"
        DLM_RETIRED = "dlm_retired", "DLM item, deleted or expired"

    uid = models.UUIDField(unique=True)
    execution_block = models.CharField(max_length=255, db_index=True)
    # Paths relative to the volume root. NULL for REST-ingested metadata (the
    # API shows the literal "None"); unique so a re-index upserts by file.
    metadata_file = models.CharField(max_length=1024, unique=True, null=True, blank=True)
    dataproduct_file = models.CharField(max_length=1024, null=True, blank=True)
    # No index of its own: dpd_display_order leads with it and serves date
    # ranges; a second one only tempted the planner into BitmapAnd plans that
    # read ~70,000 entries to narrow a ~1,000-row trigram match.
    date_created = models.DateField()
    metadata = models.JSONField(help_text="The whole metadata document, as loaded.")
    access_group = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        # No index: visibility (NULL or the caller's groups) matches about
        # half the catalogue, so an index never narrows a search; it only
        # tempted the planner into costly BitmapAnd plans (see date_created).
        help_text='context.access_group; NULL is public, "" hides from everyone.',
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.VOLUME)
    # Change detection: a re-index skips files whose (mtime_ns, size) match.
    file_mtime_ns = models.BigIntegerField(null=True, blank=True)
    file_size = models.BigIntegerField(null=True, blank=True)
    # Bumped by every insert or update: /status's last_metadata_update_time is its max.
    indexed_at = models.DateTimeField(auto_now=True, db_index=True)
    # Derived from the row by fields_from (dpd/search_text.py): what search and
    # filter match with a trigram index instead of reading every document.
    search_text = models.TextField(default="", editable=False)
    # signature(search_text): the bigram buckets the key:value window tests
    # before reading a search text. NULL (rows written by hand) passes.
    search_signature = SignatureField(null=True, editable=False)
    # {flattened field: number|string|boolean|list}: the grid config's columns.
    field_types = models.JSONField(default=dict, editable=False)
    # The flattened row as JSON object text, without the fields that depend on
    # settings or on the request (metadata_store_name, id): search and filter
    # splice those in and send the text as it is (dpd/search_rows.py), instead
    # of decoding the document, flattening and encoding it again per row.
    # NULL for rows written before it existed (they are rendered in Python);
    # nullable also lets SQLite add the column without rebuilding the table.
    row_json = models.TextField(null=True, editable=False)
    # Every row field as "name US value", folded, and "name RS" for each that
    # holds a value (dpd.search_text.field_values): the grid's equals, isAnyOf
    # and isEmpty filters, through a GIN index. NULL for rows written by
    # hand: no such filter matches them.
    field_values = FieldValuesField(null=True, editable=False)
    # execution_block as the grid's filters compare it (ExecutionBlockSearchText,
    # lower-cased), kept by the database: they test it with LIKE through its
    # own trigram index (FoldedLike).
    execution_block_folded = models.GeneratedField(
        expression=Lower(ExecutionBlockSearchText()),
        output_field=FoldedText(),
        db_persist=True,
    )

    # The SDP flows of the product's execution block, kept by the flow watcher
    # (dpd.sdp_sync) in the row itself, row_json included: pages read them
    # with the row, no join. NULL: the execution block has no flow.
    sdp_flows = models.JSONField(null=True, blank=True, editable=False)
    sdp_flow_status = models.CharField(max_length=64, null=True, blank=True, editable=False)

    objects = DataProductQuerySet.as_manager()

    class Meta:
        ordering = ["-date_created", "metadata_file", "uid"]
        indexes = [
            models.Index(
                fields=["-date_created", "metadata_file", "uid"], name="dpd_display_order"
            ),
            # The same order for the open products alone: /dataproductsearch
            # and anonymous grids walk it without visiting the hidden rows in
            # between (100,000 products: the key:value window reads 1,137
            # rows instead of 2,276, 1.7 -> 1.0 ms).
            models.Index(
                fields=["-date_created", "metadata_file", "uid"],
                condition=models.Q(access_group__isnull=True),
                name="dpd_open_display_order",
            ),
            # PostgreSQL only (see the migration): key:value containment filters.
            GinIndex(fields=["metadata"], opclasses=["jsonb_path_ops"], name="dpd_metadata_gin"),
            # PostgreSQL only (see the migration): substring search and filters.
            GinIndex(OpClass("search_text", name="gin_trgm_ops"), name="dpd_search_text_trgm"),
            # PostgreSQL only (see the migration): the grid's equals filters.
            GinIndex(fields=["field_values"], name="dpd_field_values_gin"),
            # PostgreSQL only (see the migration): grid filters on execution_block.
            GinIndex(
                fields=["execution_block_folded"],
                opclasses=["gin_trgm_ops"],
                name="dpd_eb_folded_trgm",
            ),
            # PostgreSQL only (see the migration): the grid's sort on its
            # visible document columns (dpd/search_sort.py).
            *sort_indexes(),
        ]

    def __str__(self) -> str:
        return self.metadata_file or f"{self.execution_block} (ingested)"

    def get_absolute_url(self) -> str:
        """The product page (annotations app)."""
        from django.urls import reverse

        return reverse("product-page", kwargs={"uid": self.uid})

    @classmethod
    def fields_from(cls, product: ProductMetadata) -> dict[str, Any]:
        """Column values for a validated document; the one place indexer and
        ingest turn metadata into a row (derived search columns included, so
        every writer that upserts these keys keeps them current)."""
        fields = {
            "uid": product.uid,
            "execution_block": product.execution_block,
            "metadata_file": product.metadata_file,
            "dataproduct_file": product.dataproduct_file,
            "date_created": product.date_created,
            "metadata": product.document,
            "access_group": product.access_group,
        }
        row = cls(**fields).flat_row()
        fields["search_text"] = build_search_text(row)
        fields["search_signature"] = signature(fields["search_text"])
        fields["field_types"] = row_field_types(row)
        fields["field_values"] = field_values(fields["search_text"])
        fields["row_json"] = stored_row_json(row)
        return fields

    @property
    def derived_fields(self) -> dict[str, Any]:
        """What the API adds to the document (reference 4.3, 4.4)."""
        fields = {
            "date_created": self.date_created.isoformat(),
            "dataproduct_file": self.dataproduct_file or NO_FOLDER,
            "metadata_file": self.metadata_file or NO_FOLDER,
            "metadata_store_name": self.store_name,
            "uid": str(self.uid),
        }
        if self.sdp_flows is not None:  # reference 4.7
            fields["sdp_flows"] = self.sdp_flows
            if self.sdp_flow_status is not None:
                fields["sdp_flow_status"] = self.sdp_flow_status
        return fields

    @property
    def store_name(self) -> str:
        """metadata_store_name (reference 4.4): the volume's, SDP's or the DLM's."""
        if self.source == self.Source.SDP:
            return SDP_STORE_NAME
        if self.source in DLM_SOURCES:
            return DLM_STORE_NAME
        return settings.PVCNAME

    def dlm_copies(self, visible: models.QuerySet) -> list[dict[str, Any]]:
        """Where the DLM holds copies of this product's execution block: each
        listed DLM row among `visible` (the caller's products), with its
        storage and location (dlm_bridge.sync puts them in the document)."""
        if self.source in DLM_SOURCES:
            return []
        rows = visible.filter(execution_block=self.execution_block, source=self.Source.DLM)
        return [
            {"uid": str(uid), **{name: document.get(name) for name in DLM_COPY_FIELDS}}
            for uid, document in rows.order_by("uid").values_list("uid", "metadata")
        ]

    def refresh_search_fields(self) -> None:
        """Recompute the derived search columns after editing the row in place."""
        row = self.flat_row()
        self.search_text = build_search_text(row)
        self.search_signature = signature(self.search_text)
        self.field_types = row_field_types(row)
        self.field_values = field_values(self.search_text)
        self.row_json = stored_row_json(row)

    def nested_document(self) -> dict[str, Any]:
        """The document plus derived fields, nulls kept (/dataproductmetadata)."""
        return {**self.metadata, **self.derived_fields}

    def flat_row(self) -> dict[str, Any]:
        """A search/grid row: dotted keys, null leaves dropped (reference 4.6)."""
        return {**flatten(self.metadata), **self.derived_fields}

    def sdp_flow_rows(self) -> models.QuerySet:
        """The SDP flows this row shows: its execution block's, or for a
        placeholder its processing block's (the product page's table)."""
        if self.source == self.Source.SDP:
            config = self.metadata.get("config") or {}
            return Flow.objects.filter(processing_block=config.get("processing_block", ""))
        return Flow.objects.filter(execution_block=self.execution_block)

    @property
    def has_files(self) -> bool:
        return self.source == self.Source.VOLUME and self.dataproduct_file is not None


# Row fields that are not stored in row_json: the API adds them when it answers.
SPLICED_FIELDS = ("metadata_store_name", "id")
# metadata_store_name of placeholder rows (reference 4.4), listed by /status.
SDP_STORE_NAME = "SDP"
# How a placeholder's row_json starts (its document's first key): the pages
# splice SDP_STORE_NAME into these rows instead of PVCNAME (dpd.search_rows).
PLACEHOLDER_ROW_START = '{"sdp_flow_placeholder":true'
# DLM rows (dlm_bridge.sync): their store, and how their row_json starts.
DLM_STORE_NAME = "DLM"
DLM_SOURCES = (DataProduct.Source.DLM, DataProduct.Source.DLM_RETIRED)
DLM_ROW_START = '{"dlm_oid":'
DLM_COPY_FIELDS = (
    "storage_name",
    "storage_type",
    "storage_interface",
    "location_name",
    "location_type",
    "location_country",
    "location_city",
    "location_facility",
    "item_state",
)


def row_json_text(row: dict[str, Any]) -> str:
    """A row as JSON text, formatted as DRF's JSONRenderer writes it with our
    settings (compact, UTF-8, U+2028/U+2029 escaped for JavaScript)."""
    text = json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def stored_row_json(row: dict[str, Any]) -> str:
    """What row_json holds: the row without its spliced fields."""
    return row_json_text({name: value for name, value in row.items() if name not in SPLICED_FIELDS})


class FileDigest(models.Model):
    """The SHA-256 of a large volume file, shared by every process and pod
    (dpd.checksums): a download resumed on another worker takes the digests
    of the files its range skipped from here instead of reading them again.
    `identity` is a digest of the file's path under the volume and of its
    inode, size, mtime and ctime: a file rewritten or replaced gets another."""

    identity = models.BinaryField(max_length=32, primary_key=True)
    sha256 = models.BinaryField(max_length=32)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "dpd_file_digest"

    def __str__(self) -> str:
        return bytes(self.sha256).hex()


class CatalogueRemovals(models.Model):
    """How many statements have removed products, counted by a trigger on
    the products' table (migration 0016): whatever removes them (the
    indexer, the DLM bridge, the admin, SQL by hand). A removal moves no
    product's `indexed_at`, so without this what dpd.remembered_counts keeps
    (totals, orders, page marks, whole lists) showed a removed product, or
    its place, until it expired; its version now holds this count. One row
    (id 1), written by the trigger only (it appears at the first removal)."""

    id = models.PositiveSmallIntegerField(primary_key=True)
    removals = models.BigIntegerField()

    class Meta:
        db_table = "dpd_catalogue_removals"

    def __str__(self) -> str:
        return f"{self.removals} removals"


from dpd.sdp_models import Flow, ProcessingBlock, SdpWatcherState  # noqa: E402

__all__ = [
    "CatalogueRemovals",
    "DataProduct",
    "FileDigest",
    "Flow",
    "ProcessingBlock",
    "SdpWatcherState",
]
