"""Notes that curators and scientists attach to data products.

An annotation points at its product by uid, not by foreign key: uids are
stable hashes of the metadata file's location (reference 4.1), so a note made
before a re-index, or before a product was removed and re-added, finds its
product again. Every edit keeps the text it replaced as an AnnotationRevision.
"""

from __future__ import annotations

from django.db import models
from django.urls import reverse
from django.utils import timezone

from dpd.access import Identity, SignIn

# Rows written before authors were recorded by identity: only their name is
# known, so they keep the rule they had, the same principal name may edit.
LEGACY = "legacy"
AUTHOR_METHODS = [*SignIn.choices, (LEGACY, "not recorded; matched by name")]


class AnnotationQuerySet(models.QuerySet):
    def for_product(self, uid) -> AnnotationQuerySet:
        return self.filter(data_product_uid=uid)

    def on_products(self, products: models.QuerySet) -> AnnotationQuerySet:
        """Annotations whose product is in `products` (e.g. the visible ones).

        Annotations of products no longer catalogued are left out: nobody can
        say whether the caller may see them.
        """
        return self.filter(data_product_uid__in=products.values("uid"))


class Annotation(models.Model):
    # The integer the API exposes and takes back for updates (reference 2.12).
    annotation_id = models.BigAutoField(primary_key=True)
    data_product_uid = models.UUIDField(db_index=True)
    annotation_text = models.TextField()
    # The author: from the authenticated identity, never from a request body.
    # The name is what is shown (and the upstream's field); the sign-in method
    # and its subject say who may edit (dpd.access.Identity).
    user_principal_name = models.CharField(max_length=255, db_index=True)
    author_method = models.CharField(max_length=16, choices=AUTHOR_METHODS)
    author_subject = models.CharField(max_length=255)
    timestamp_created = models.DateTimeField(default=timezone.now)
    timestamp_modified = models.DateTimeField(default=timezone.now, db_index=True)
    # Who wrote the current text: the author, or a staff member who edited it.
    modified_by = models.CharField(max_length=255, blank=True)

    objects = AnnotationQuerySet.as_manager()

    class Meta:
        ordering = ["annotation_id"]

    def __str__(self) -> str:
        return f"#{self.annotation_id} on {self.data_product_uid} by {self.user_principal_name}"

    def get_absolute_url(self) -> str:
        return reverse("product-page", kwargs={"uid": self.data_product_uid}) + (
            f"#annotation-{self.annotation_id}"
        )

    def is_written_by(self, identity: Identity) -> bool:
        """Whether `identity` is this annotation's author: the same sign-in
        method and subject, whatever the names."""
        if self.author_method == LEGACY:
            return identity.name == self.user_principal_name
        return (identity.method, identity.subject) == (self.author_method, self.author_subject)

    @property
    def last_editor(self) -> str:
        return self.modified_by or self.user_principal_name

    @property
    def was_edited(self) -> bool:
        return self.timestamp_modified != self.timestamp_created


class AnnotationRevision(models.Model):
    """One edit: the text it replaced (what), who wrote that text and when,
    and who replaced it and when."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="revisions")
    annotation_text = models.TextField(help_text="The text before this edit.")
    written_by = models.CharField(max_length=255, help_text="Who wrote the replaced text.")
    written_at = models.DateTimeField(help_text="When the replaced text was saved.")
    edited_by = models.CharField(max_length=255, db_index=True, help_text="Who made this edit.")
    edited_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["annotation_id", "-edited_at", "-id"]

    def __str__(self) -> str:
        return (
            f"edit of #{self.annotation_id} by {self.edited_by} at {self.edited_at:%Y-%m-%d %H:%M}"
        )


class UpstreamAnnotation(models.Model):
    """A row of the SKA DPD API's annotations table that
    `manage.py import_upstream_annotations` brought over: which row it was,
    so that a second run updates it instead of adding it again."""

    # The upstream table as `schema.table`; its ids are unique only there.
    source = models.CharField(max_length=255)
    upstream_id = models.BigIntegerField()
    # Null once the annotation is deleted here: a later run does not bring it back.
    annotation = models.OneToOneField(
        Annotation, null=True, on_delete=models.SET_NULL, related_name="upstream"
    )
    # The upstream row's timestamp_modified when it was last brought over.
    upstream_modified = models.DateTimeField()
    imported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "upstream_id"], name="upstream_row_once")
        ]

    def __str__(self) -> str:
        return f"{self.source} #{self.upstream_id}"
