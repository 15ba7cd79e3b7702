"""The index-run job resource (our /api/v1/ extension namespace)."""

from __future__ import annotations

from rest_framework import serializers

from indexing.models import IndexRun


class FailedFileSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Metadata file, relative to the volume root.")
    reason = serializers.CharField()


class IndexRunSerializer(serializers.ModelSerializer):
    """A run as a job: its state, its progress counts, what failed and why."""

    url = serializers.HyperlinkedIdentityField(view_name="index-run-detail")
    errors = FailedFileSerializer(many=True, read_only=True)
    log = serializers.ListField(child=serializers.CharField(), read_only=True)
    duration = serializers.SerializerMethodField()

    class Meta:
        model = IndexRun
        fields = [
            "id",
            "url",
            "status",
            "trigger",
            "created",
            "started",
            "terminal_timestamp",
            "duration",
            "timed_out",
            "failure_message",
            "volume_prefix",
            "indexed_by",
            "indexing_step",
            "files_found",
            "files_processed",
            "files_added",
            "files_updated",
            "files_skipped",
            "files_removed",
            "work_units",
            "errors",
            "log",
        ]
        read_only_fields = fields

    def get_duration(self, run: IndexRun) -> str | None:
        """str(timedelta), as /status's last_index_duration."""
        return str(run.duration) if run.duration is not None else None


class IndexRunListSerializer(IndexRunSerializer):
    """List rows leave out the log (the detail has it)."""

    class Meta(IndexRunSerializer.Meta):
        fields = [f for f in IndexRunSerializer.Meta.fields if f != "log"]
        read_only_fields = fields
