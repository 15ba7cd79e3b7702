"""SDP keys -> Flow and ProcessingBlock rows -> the flows products carry.

`Mirror` holds what etcd says about processing blocks and flows (reference
dlm-sdp.md 2.2-2.5), built from a snapshot and kept current by applying
changes: the watcher is the only writer, so its memory is the truth it writes.
A key that cannot be read (malformed JSON, not an object, an id that does not
split into `<pb_id>:<kind>:<name>`) is logged with its key and treated as
absent, in a snapshot and in a watch alike; nothing in etcd can stop the
watcher.

Writing: the Flow/ProcessingBlock rows of what changed, then each affected
execution block's products (`sdp_flows`, `sdp_flow_status`, their row_json and
search text) and placeholder rows (reference 4.7): an active processing block
whose execution block has no product of any access group gets a row of its
own (DataProduct.Source.SDP), removed once a product of that execution block
is indexed (`reconcile_recent`, each second, finds products indexed since).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from dpd.models import DataProduct, Flow, ProcessingBlock

logger = logging.getLogger(__name__)

TERMINAL_PB_STATUSES = frozenset({"FINISHED", "FAILED", "CANCELLED"})
# A product's sdp_flow_status is its least advanced flow's: a failure first,
# then data moving, waiting, created; COMPLETED only when every flow is.
_STATUS_RANK = {"FAILED": 0, "FLOWING": 1, "PENDING": 2, "WAITING": 2, "INITIALISED": 3}
_OTHER_RANK, _COMPLETED_RANK = 4, 9
# Placeholder uids: uuid5 of the processing block id in this namespace.
PLACEHOLDER_NAMESPACE = uuid.UUID("6f1c8d2e-4b7a-5e90-a3c1-5d2f0e8b7c64")
_EB_DATE = re.compile(r"^eb-[^-]+-(\d{8})-")
_MAX_ID = 255
_CHUNK = 500


@dataclass
class PBRecord:
    pb_id: str
    execution_block: str | None = None
    script_name: str = ""
    status: str | None = None
    last_updated: dt.datetime | None = None
    has_definition: bool = False
    has_state: bool = False


@dataclass
class FlowRecord:
    key: str
    pb_id: str
    kind: str
    name: str
    sink: Any = None
    data_model: str = ""
    status: str | None = None
    reason: str = ""
    error_state: Any = None
    last_updated: dt.datetime | None = None
    has_definition: bool = False
    has_state: bool = False


@dataclass
class Mirror:
    pbs: dict[str, PBRecord] = field(default_factory=dict)
    flows: dict[str, FlowRecord] = field(default_factory=dict)
    # When each execution block's products were last made current: a product
    # indexed before that needs nothing from reconcile_recent.
    written: dict[str, dt.datetime] = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: dict[str, bytes]) -> Mirror:
        mirror = cls()
        for key in sorted(values):
            mirror.apply(key, values[key])
        return mirror

    def apply(self, key: str, value: bytes | None) -> tuple[set[str], set[str]]:
        """Apply one put (value) or delete (None); returns the (pb ids, flow
        keys) whose records changed or went."""
        if key.startswith("/pb/"):
            return self._apply_pb(key[len("/pb/") :], value), set()
        if key.startswith("/flow/"):
            return set(), self._apply_flow(key, key[len("/flow/") :], value)
        return set(), set()  # /eb/: flows link to their EB through the PB

    def _apply_pb(self, rest: str, value: bytes | None) -> set[str]:
        pb_id, _, sub = rest.partition("/")
        if sub not in ("", "state") or not _valid_id(pb_id):
            if sub not in ("owner",):
                logger.debug("sdp: ignoring /pb/%s", rest)
            return set()
        document = _document(f"/pb/{rest}", value)
        record = self.pbs.get(pb_id) or PBRecord(pb_id)
        if sub == "":
            record.has_definition = document is not None
            document = document or {}
            eb = document.get("eb_id")
            if eb is not None and not (isinstance(eb, str) and _valid_id(eb)):
                logger.warning("sdp: /pb/%s: eb_id %r is not an id; no execution block", rest, eb)
                eb = None
            record.execution_block = eb
            script = document.get("script")
            name = script.get("name") if isinstance(script, dict) else None
            record.script_name = name[:_MAX_ID] if isinstance(name, str) else ""
        else:
            record.has_state = document is not None
            document = document or {}
            record.status = _status(document.get("status"))
            record.last_updated = _moment(document.get("last_updated"))
        if not (record.has_definition or record.has_state):
            self.pbs.pop(pb_id, None)
        else:
            self.pbs[pb_id] = record
        return {pb_id}

    def _apply_flow(self, key: str, rest: str, value: bytes | None) -> set[str]:
        flow_id, _, sub = rest.partition("/")
        if sub not in ("", "state"):
            logger.warning("sdp: ignoring unexpected key %s", key)
            return set()
        parts = flow_id.split(":", 2)
        if len(parts) != 3 or not all(parts) or len(flow_id) > 512 or not _valid_id(parts[0]):
            logger.warning("sdp: ignoring %s: a flow id is <pb_id>:<kind>:<name>", key)
            return set()
        document = _document(key, value)
        record = self.flows.get(flow_id) or FlowRecord(
            flow_id, parts[0], parts[1][:_MAX_ID], parts[2][:_MAX_ID]
        )
        if sub == "":
            record.has_definition = document is not None
            document = document or {}
            record.sink = document.get("sink")
            data_model = document.get("data_model")
            record.data_model = data_model[:_MAX_ID] if isinstance(data_model, str) else ""
        else:
            record.has_state = document is not None
            document = document or {}
            record.status = _status(document.get("status"))
            reason = document.get("reason")
            record.reason = reason if isinstance(reason, str) else ""
            record.error_state = document.get("error_state")
            record.last_updated = _moment(document.get("last_updated"))
        if not (record.has_definition or record.has_state):
            self.flows.pop(flow_id, None)
        else:
            self.flows[flow_id] = record
        return {flow_id}

    def flows_by_pb(self) -> dict[str, list[FlowRecord]]:
        grouped: dict[str, list[FlowRecord]] = defaultdict(list)
        for flow in self.flows.values():
            grouped[flow.pb_id].append(flow)
        return grouped

    def pbs_by_eb(self) -> dict[str, list[PBRecord]]:
        grouped: dict[str, list[PBRecord]] = defaultdict(list)
        for pb in self.pbs.values():
            if pb.execution_block:
                grouped[pb.execution_block].append(pb)
        return grouped

    def execution_block_of(self, pb_id: str) -> str | None:
        pb = self.pbs.get(pb_id)
        return pb.execution_block if pb else None


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= _MAX_ID and value.isprintable()


def _document(key: str, value: bytes | None) -> dict[str, Any] | None:
    """The JSON object of a put, None for a delete or a value that is not one."""
    if value is None:
        return None
    try:
        document = json.loads(value)
    except ValueError:  # includes UnicodeDecodeError
        logger.warning("sdp: ignoring %s: its value is not JSON", key)
        return None
    if not isinstance(document, dict):
        logger.warning("sdp: ignoring %s: its value is not a JSON object", key)
        return None
    return document


def _status(value: Any) -> str | None:
    return value[:64] if isinstance(value, str) and value else None


def _moment(value: Any) -> dt.datetime | None:
    """An epoch in seconds (flow states) or an ISO timestamp (PB states)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            moment = parse_datetime(value)
        except ValueError:
            return None
        if moment is not None and timezone.is_naive(moment):
            moment = timezone.make_aware(moment, dt.UTC)
        return moment
    return None


# --- Flow and ProcessingBlock rows ---------------------------------------------


def _flow_row(flow: FlowRecord, mirror: Mirror) -> Flow:
    pb = mirror.pbs.get(flow.pb_id)
    return Flow(
        key=flow.key,
        processing_block=flow.pb_id,
        execution_block=pb.execution_block if pb else None,
        kind=flow.kind,
        name=flow.name,
        sink=flow.sink,
        data_model=flow.data_model,
        status=flow.status,
        reason=flow.reason,
        error_state=flow.error_state,
        last_updated=flow.last_updated,
        pb_status=pb.status if pb else None,
        has_definition=flow.has_definition,
        updated_at=timezone.now(),
    )


def _pb_row(pb: PBRecord) -> ProcessingBlock:
    return ProcessingBlock(
        pb_id=pb.pb_id,
        execution_block=pb.execution_block,
        script_name=pb.script_name,
        status=pb.status,
        last_updated=pb.last_updated,
        has_definition=pb.has_definition,
        updated_at=timezone.now(),
    )


_FLOW_FIELDS = [f.name for f in Flow._meta.concrete_fields if f.name not in ("id", "key")]
_PB_FIELDS = [
    f.name for f in ProcessingBlock._meta.concrete_fields if f.name not in ("id", "pb_id")
]


def _write_rows(mirror: Mirror, pb_ids: Iterable[str], flow_keys: Iterable[str]) -> None:
    pb_ids, flow_keys = set(pb_ids), set(flow_keys)
    gone_pbs = [pb for pb in pb_ids if pb not in mirror.pbs]
    gone_flows = [key for key in flow_keys if key not in mirror.flows]
    for chunk in _chunks(gone_pbs):
        ProcessingBlock.objects.filter(pb_id__in=chunk).delete()
    for chunk in _chunks(gone_flows):
        Flow.objects.filter(key__in=chunk).delete()
    pbs = [_pb_row(mirror.pbs[pb]) for pb in sorted(pb_ids) if pb in mirror.pbs]
    flows = [_flow_row(mirror.flows[k], mirror) for k in sorted(flow_keys) if k in mirror.flows]
    if pbs:
        ProcessingBlock.objects.bulk_create(
            pbs,
            update_conflicts=True,
            unique_fields=["pb_id"],
            update_fields=_PB_FIELDS,
            batch_size=_CHUNK,
        )
    if flows:
        Flow.objects.bulk_create(
            flows,
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=_FLOW_FIELDS,
            batch_size=_CHUNK,
        )


def write_snapshot(mirror: Mirror) -> None:
    """Make the tables what the mirror holds (rows etcd lost while nobody
    watched go), then every execution block that has flows or had some."""
    stored_flows = set(Flow.objects.values_list("key", flat=True))
    stored_pbs = set(ProcessingBlock.objects.values_list("pb_id", flat=True))
    with transaction.atomic():
        _write_rows(mirror, stored_pbs | set(mirror.pbs), stored_flows | set(mirror.flows))
    enriched = DataProduct.objects.filter(sdp_flows__isnull=False).values_list(
        "execution_block", flat=True
    )
    placeholders = DataProduct.objects.filter(source=DataProduct.Source.SDP).values_list(
        "execution_block", flat=True
    )
    refresh_execution_blocks(
        mirror, {*mirror.pbs_by_eb(), *enriched.distinct(), *placeholders.distinct()}
    )


def write_changes(mirror: Mirror, changes: Iterable[tuple[str, bytes | None]]) -> int:
    """Apply a batch of watched changes and write what they touched; returns
    how many keys changed a record."""
    touched_pbs: set[str] = set()
    touched_flows: set[str] = set()
    ebs: set[str] = set()
    applied = 0
    for key, value in changes:
        before = {mirror.execution_block_of(pb) for pb in _pb_of(key)}
        pbs, flows = mirror.apply(key, value)
        applied += bool(pbs or flows)
        touched_pbs |= pbs
        touched_flows |= flows
        ebs |= before
    flows_by_pb = mirror.flows_by_pb()
    for pb in touched_pbs:  # a PB's EB and status are on each of its flows' rows
        touched_flows |= {flow.key for flow in flows_by_pb.get(pb, [])}
        ebs.add(mirror.execution_block_of(pb))
    for key in touched_flows:
        flow = mirror.flows.get(key)
        if flow is not None:
            ebs.add(mirror.execution_block_of(flow.pb_id))
        else:
            ebs.add(mirror.execution_block_of(key.split(":", 1)[0]))
    with transaction.atomic():
        _write_rows(mirror, touched_pbs, touched_flows)
        refresh_execution_blocks(mirror, {eb for eb in ebs if eb})
    return applied


def _pb_of(key: str) -> list[str]:
    """The processing block a key belongs to (for its EB before the change)."""
    if key.startswith("/pb/"):
        return [key[len("/pb/") :].partition("/")[0]]
    if key.startswith("/flow/"):
        return [key[len("/flow/") :].partition(":")[0]]
    return []


# --- What products carry ---------------------------------------------------------


def summarise(flows: list[FlowRecord]) -> tuple[list[dict[str, Any]], str | None]:
    """sdp_flows (reference 4.7, by flow id) and the product's sdp_flow_status."""
    ordered = sorted(flows, key=lambda flow: flow.key)
    summary = [{"sdp_flow": flow.key, "sdp_flow_status": flow.status} for flow in ordered]
    statuses = [flow.status for flow in ordered if flow.status]
    overall = min(statuses, key=_rank) if statuses else None
    return summary, overall


def _rank(status: str) -> int:
    if status == "COMPLETED":
        return _COMPLETED_RANK
    return _STATUS_RANK.get(status, _OTHER_RANK)


def placeholder_uid(pb_id: str) -> uuid.UUID:
    return uuid.uuid5(PLACEHOLDER_NAMESPACE, pb_id)


def is_active(pb: PBRecord) -> bool:
    """Not finished, failed or cancelled; no state yet means starting (2.3)."""
    return pb.status not in TERMINAL_PB_STATUSES


def refresh_execution_blocks(mirror: Mirror, ebs: Iterable[str]) -> None:
    flows_by_pb = mirror.flows_by_pb()
    pbs_by_eb = mirror.pbs_by_eb()
    for chunk in _chunks(sorted(set(ebs))):
        rows: dict[str, list[DataProduct]] = defaultdict(list)
        for product in DataProduct.objects.filter(execution_block__in=chunk).order_by("pk"):
            rows[product.execution_block].append(product)
        for eb in chunk:
            now = timezone.now()
            _refresh_one(eb, rows.get(eb, []), pbs_by_eb.get(eb, []), flows_by_pb, now)
            mirror.written[eb] = now


def _refresh_one(
    eb: str,
    rows: list[DataProduct],
    pbs: list[PBRecord],
    flows_by_pb: dict[str, list[FlowRecord]],
    now: dt.datetime,
) -> None:
    flows = [flow for pb in pbs for flow in flows_by_pb.get(pb.pb_id, [])]
    summary, overall = summarise(flows) if flows else (None, None)
    products = [row for row in rows if row.source != DataProduct.Source.SDP]
    placeholders = {row.uid: row for row in rows if row.source == DataProduct.Source.SDP}
    for product in products:
        _set_flows(product, summary, overall, now)
    wanted = {} if products else {placeholder_uid(pb.pb_id): pb for pb in pbs if is_active(pb)}
    for uid, row in placeholders.items():
        if uid not in wanted:
            row.delete()
    for uid, pb in wanted.items():
        _put_placeholder(uid, pb, flows_by_pb.get(pb.pb_id, []), placeholders.get(uid))


def _set_flows(
    product: DataProduct, summary: list | None, overall: str | None, now: dt.datetime
) -> None:
    """Write the flows into the product's row unless they are there already.

    The UPDATE holds only if the row is still the one read (indexed_at): a
    re-index that rewrote it meanwhile wins, and the next reconcile_recent
    sets the flows on its new row_json."""
    before = product.row_json
    product.sdp_flows, product.sdp_flow_status = summary, overall
    product.refresh_search_fields()
    if product.row_json == before:
        return
    DataProduct.objects.filter(pk=product.pk, indexed_at=product.indexed_at).update(
        sdp_flows=summary,
        sdp_flow_status=overall,
        search_text=product.search_text,
        search_signature=product.search_signature,
        field_types=product.field_types,
        field_values=product.field_values,
        row_json=product.row_json,
        indexed_at=now,
    )


def _placeholder_date(eb: str, pb: PBRecord) -> dt.date:
    """The date in the execution block's id (eb-<gen>-<YYYYMMDD>-<seq>), else
    the PB state's, else today."""
    match = _EB_DATE.match(eb)
    if match:
        try:
            return dt.datetime.strptime(match.group(1), "%Y%m%d").date()
        except ValueError:
            pass
    if pb.last_updated is not None:
        return pb.last_updated.date()
    return timezone.now().date()


def _put_placeholder(
    uid: uuid.UUID, pb: PBRecord, flows: list[FlowRecord], row: DataProduct | None
) -> None:
    eb = pb.execution_block or ""
    summary, overall = summarise(flows)
    config = {"processing_block": pb.pb_id}
    if pb.script_name:
        config["processing_script"] = pb.script_name
    # The marker first: the stored row text starts with it (PLACEHOLDER_ROW_START).
    metadata = {"sdp_flow_placeholder": True, "execution_block": eb, "config": config}
    if row is None:
        row = DataProduct(
            uid=uid,
            execution_block=eb,
            date_created=_placeholder_date(eb, pb),
            source=DataProduct.Source.SDP,
        )
    elif (row.metadata, row.sdp_flows, row.sdp_flow_status) == (metadata, summary, overall):
        return
    row.metadata, row.sdp_flows, row.sdp_flow_status = metadata, summary, overall
    row.refresh_search_fields()
    row.save()


def reconcile_recent(mirror: Mirror, since: dt.datetime | None) -> dt.datetime | None:
    """Products indexed since `since` (a few seconds back, for batches that
    committed late): give them their execution block's flows and drop the
    placeholders they replace. Returns the `since` of the next call."""
    products = DataProduct.objects.exclude(source=DataProduct.Source.SDP)
    latest = products.aggregate(latest=Max("indexed_at"))["latest"]
    if latest is None or (since is not None and latest < since):
        return since
    recent = products if since is None else products.filter(indexed_at__gte=since)
    watched = mirror.pbs_by_eb()
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    ebs = {
        eb
        for eb, indexed_at in recent.values_list("execution_block", "indexed_at")
        if eb in watched and indexed_at > mirror.written.get(eb, never)
    }
    if ebs:
        with transaction.atomic():
            refresh_execution_blocks(mirror, ebs)
    return latest - RECONCILE_MARGIN


RECONCILE_MARGIN = dt.timedelta(seconds=5)


def _chunks(items: Iterable[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]
