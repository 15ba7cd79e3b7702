"""What the SDP configuration database says, as the flow watcher last saw it.

The watcher (dpd.sdp_watcher) is the only writer: these tables mirror the
`/pb/` and `/flow/` keys (reference dlm-sdp.md 2.2-2.6), and products carry
their execution block's flows in their own row (DataProduct.sdp_flows).
"""

from __future__ import annotations

from django.db import models


class ProcessingBlock(models.Model):
    """`/pb/<pb_id>` and its `/state`: the link from a flow to its execution block."""

    pb_id = models.CharField(max_length=255, unique=True)
    # /pb/<id>.eb_id; NULL for a stand-alone batch PB (or a PB whose state came first).
    execution_block = models.CharField(max_length=255, null=True, blank=True, db_index=True)
    script_name = models.CharField(max_length=255, blank=True, default="")
    # /pb/<id>/state.status, free text; NULL: no state yet (the PB is starting).
    status = models.CharField(max_length=64, null=True, blank=True)
    last_updated = models.DateTimeField(null=True, blank=True)
    has_definition = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "SDP processing block"
        ordering = ["pb_id"]

    def __str__(self) -> str:
        return self.pb_id


class Flow(models.Model):
    """One SDP flow: `/flow/<pb_id>:<kind>:<name>` and its `/state`."""

    key = models.CharField(max_length=512, unique=True, help_text="<pb_id>:<kind>:<name>")
    processing_block = models.CharField(max_length=255, db_index=True)
    # Through /pb/<pb_id>.eb_id; NULL while that PB is unknown or has none.
    execution_block = models.CharField(max_length=255, null=True, blank=True, db_index=True)
    kind = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    sink = models.JSONField(null=True, blank=True)
    data_model = models.CharField(max_length=255, blank=True, default="")
    # /flow/.../state.status, free text (reference 2.5); NULL: no state yet.
    status = models.CharField(max_length=64, null=True, blank=True, db_index=True)
    reason = models.TextField(blank=True, default="")
    error_state = models.JSONField(null=True, blank=True)
    last_updated = models.DateTimeField(null=True, blank=True)
    pb_status = models.CharField(max_length=64, null=True, blank=True)
    # False when only the /state key exists (the definition is not written yet).
    has_definition = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "SDP flow"
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class SdpWatcherState(models.Model):
    """One row: what the writing watcher last reported (/status reads it)."""

    holder = models.CharField(max_length=255, blank=True, default="")
    etcd_connected = models.BooleanField(default=False)
    watcher_connected = models.BooleanField(default=False)
    revision = models.BigIntegerField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    flows = models.IntegerField(default=0)
    message = models.TextField(blank=True, default="")
    heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "SDP watcher state"

    def __str__(self) -> str:
        return f"SDP watcher ({self.holder or 'nobody'})"
