"""The DLM's tables, read-only (reference dlm-sdp.md 1.3), and our mirror's state.

`Location`, `Storage` and `DataItem` are unmanaged: the DLM owns them, its
router (dlm_bridge.router) reads them through the `dlm` database alias and
refuses every write. Enumerated types are CharFields (the DLM's enums are
PostgreSQL types of its own schema); every column the DDL leaves nullable is
nullable here, whatever the DLM's SQLAlchemy models claim.

`SyncState` is ours: one row saying how the last mirror sync went (/status).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


def dlm_table(name: str) -> str:
    """A table of the DLM's schema, quoted so that Django keeps the schema."""
    return f'"{settings.SKA_DATAPRODUCT_API_POSTGRESQL_DLM_SCHEMA}"."{name}"'


class Location(models.Model):
    location_id = models.UUIDField(primary_key=True)
    location_name = models.CharField(max_length=255)
    location_type = models.CharField(max_length=64)
    location_country = models.CharField(max_length=8, null=True)
    location_city = models.CharField(max_length=255, null=True)
    location_facility = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = dlm_table("location")
        verbose_name = "DLM location"

    def __str__(self) -> str:
        return self.location_name


class Storage(models.Model):
    storage_id = models.UUIDField(primary_key=True)
    # NOT NULL in the DDL, but its foreign key says ON DELETE SET NULL.
    location = models.ForeignKey(
        Location,
        db_column="location_id",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    storage_name = models.CharField(max_length=255)
    root_directory = models.CharField(max_length=1024, null=True)
    storage_type = models.CharField(max_length=64)
    storage_interface = models.CharField(max_length=64)
    storage_phase = models.CharField(max_length=16, null=True)
    storage_available = models.BooleanField(null=True)
    storage_retired = models.BooleanField(null=True)

    class Meta:
        managed = False
        db_table = dlm_table("storage")
        verbose_name = "DLM storage"
        verbose_name_plural = "DLM storages"

    def __str__(self) -> str:
        return self.storage_name


class DataItem(models.Model):
    """One copy (uid) of a logical item (oid); copies share oid, name and metadata."""

    uid = models.UUIDField(primary_key=True)
    oid = models.UUIDField(null=True)
    item_version = models.IntegerField(null=True)
    item_name = models.CharField(max_length=1024, null=True)
    storage = models.ForeignKey(
        Storage,
        db_column="storage_id",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    uri = models.CharField(max_length=2048, null=True)
    item_type = models.CharField(max_length=32, null=True)
    item_format = models.CharField(max_length=64, null=True)
    item_mime_type = models.CharField(max_length=128, null=True)
    uid_phase = models.CharField(max_length=16, null=True)
    oid_phase = models.CharField(max_length=16, null=True)
    item_state = models.CharField(max_length=16, null=True)
    uid_creation = models.DateTimeField(null=True)
    oid_creation = models.DateTimeField(null=True)
    uid_expiration = models.DateTimeField(null=True)
    expired = models.BooleanField(null=True)
    deleted = models.BooleanField(null=True)
    item_owner = models.CharField(max_length=255, null=True)
    item_group = models.CharField(max_length=255, null=True)
    # int4 in the DDL: wraps above 2 GiB, a display value only.
    item_size = models.IntegerField(null=True)
    parents = models.UUIDField(null=True)
    metadata = models.JSONField(null=True)

    class Meta:
        managed = False
        db_table = dlm_table(settings.SKA_DATAPRODUCT_API_POSTGRESQL_DLM_METADATA_TABLE_NAME)
        verbose_name = "DLM data item"

    def __str__(self) -> str:
        return self.item_name or str(self.uid)


class SyncState(models.Model):
    """What the last mirror sync did (one row, pk 1)."""

    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    items = models.IntegerField(default=0, help_text="DLM items in the catalogue after the sync")
    written = models.IntegerField(default=0)
    removed = models.IntegerField(default=0)
    skipped = models.IntegerField(default=0, help_text="items whose metadata is unusable")
    error = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "DLM sync state"

    def __str__(self) -> str:
        return f"DLM sync at {self.finished_at}"
