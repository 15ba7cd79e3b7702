"""Creating and editing annotations: the rules the API, the pages and the
admin share.

- The author is the caller's identity (`dpd.access.caller_identity`), passed
  in by the interface; it is never read from a request body.
- A product is annotatable only when the caller can see it: an invisible
  product does not exist (404), like a missing one.
- Only the author edits an annotation, recognised by identity (sign-in
  method and subject), not by name; staff may edit anyone's. Every edit
  keeps the replaced text as an AnnotationRevision, written in the same
  transaction as the new text, so history never has gaps.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet, Subquery
from django.utils import timezone

from annotations.models import Annotation, AnnotationRevision
from dpd.access import Identity
from dpd.models import DataProduct

# PostgreSQL bigint: a larger id cannot name a row (and would raise a DataError).
_MAX_ID = 2**63 - 1


class AnnotationError(Exception):
    """A refusal; the message is shown to the caller as is."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidAnnotation(AnnotationError):
    """Bad input (400)."""


class AnnotationTooLong(InvalidAnnotation):
    """Text past ANNOTATION_MAX_LENGTH (413 in the API)."""


class ProductNotFound(AnnotationError):
    """Unknown product, or one the caller may not see (404)."""


class AnnotationNotFound(AnnotationError):
    """Unknown annotation, or one on a product the caller may not see (404)."""


class NotAnnotationAuthor(AnnotationError):
    """Editing someone else's annotation without being staff (403)."""


def annotation_text_clean(raw: Any) -> str:
    """The text to store, or InvalidAnnotation saying what is wrong with it.

    Stored as given (no trimming: it is the author's text), but it must hold
    something besides whitespace, must fit the documented limit, and must not
    contain NUL, which PostgreSQL text cannot store.
    """
    if raw is None:
        raise InvalidAnnotation("annotation_text is required.")
    if not isinstance(raw, str):
        raise InvalidAnnotation(f"annotation_text must be a string, not {_json_type(raw)}.")
    if not raw.strip():
        raise InvalidAnnotation("annotation_text must not be empty.")
    limit = settings.ANNOTATION_MAX_LENGTH
    if len(raw) > limit:
        raise AnnotationTooLong(
            f"annotation_text is {len(raw)} characters long; the limit is {limit}."
        )
    if "\x00" in raw:
        raise InvalidAnnotation("annotation_text must not contain NUL characters.")
    return raw


def product_uid_parse(raw: Any) -> uuid.UUID:
    """A data product uid from user input (a UUID in 8-4-4-4-12 hex)."""
    if isinstance(raw, uuid.UUID):
        return raw
    if raw is None or raw == "":
        raise InvalidAnnotation("data_product_uid is required.")
    if not isinstance(raw, str):
        raise InvalidAnnotation(f"data_product_uid must be a string, not {_json_type(raw)}.")
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise InvalidAnnotation(f"data_product_uid {raw[:80]!r} is not a UUID.") from None


def annotation_id_parse(raw: Any) -> int:
    """An annotation id from user input: a JSON integer (booleans are not)."""
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidAnnotation(f"annotation_id must be an integer, not {_json_type(raw)}.")
    return raw


def visible_product(products: QuerySet[DataProduct], uid: uuid.UUID) -> DataProduct:
    """The product with this uid among `products` (the caller's visible ones)."""
    product = products.filter(uid=uid).first()
    if product is None:
        raise ProductNotFound(f"No data product with uid {uid}.")
    return product


def annotated_product_uids(text: str) -> QuerySet:
    """The uids of the products with an annotation containing `text`,
    case-insensitively: the grid's "annotation" filter (reference 3.6)."""
    return Annotation.objects.filter(annotation_text__icontains=text).values("data_product_uid")


def annotations_changed_at() -> Subquery:
    """When an annotation was last written, as a subquery: a remembered count
    of products filtered on annotations holds until then (read in the same
    statement as the catalogue's own change time, dpd.remembered_counts)."""
    latest = Annotation.objects.order_by("-timestamp_modified").values("timestamp_modified")
    return Subquery(latest[:1])


def annotation_create(
    *, product_uid: Any, text: Any, author: Identity, products: QuerySet[DataProduct]
) -> Annotation:
    """A new annotation by `author` on a product among `products`."""
    clean_text = annotation_text_clean(text)
    product = visible_product(products, product_uid_parse(product_uid))
    now = timezone.now()
    return Annotation.objects.create(
        data_product_uid=product.uid,
        annotation_text=clean_text,
        user_principal_name=author.name,
        author_method=author.method,
        author_subject=author.subject,
        modified_by=author.name,
        timestamp_created=now,
        timestamp_modified=now,
    )


def annotation_editable(
    annotation_id: Any,
    *,
    editor: Identity,
    editor_is_staff: bool,
    products: QuerySet[DataProduct] | None,
    lock: bool = False,
) -> Annotation:
    """The annotation `editor` may edit, or the refusal that applies.

    Existence and visibility are checked before ownership, so a caller cannot
    learn that an annotation exists on a product hidden from them. `products`
    None means no visibility limit (the admin, which also reaches annotations
    whose product has left the catalogue).
    """
    annotation_id = annotation_id_parse(annotation_id)
    rows = Annotation.objects.select_for_update() if lock else Annotation.objects
    annotation = rows.filter(pk=annotation_id).first() if 0 < annotation_id <= _MAX_ID else None
    if annotation is None or (
        products is not None and not products.filter(uid=annotation.data_product_uid).exists()
    ):
        raise AnnotationNotFound(f"No annotation with annotation_id {annotation_id}.")
    if not editor_is_staff and not annotation.is_written_by(editor):
        # The same name may be another person who signed in another way.
        raise NotAnnotationAuthor(
            f"Annotation {annotation_id} belongs to {annotation.user_principal_name} "
            f"(sign-in: {annotation.get_author_method_display()}); only its author, signed in "
            "the same way, or staff may edit it."
        )
    return annotation


def annotation_update(
    *,
    annotation_id: Any,
    text: Any,
    editor: Identity,
    editor_is_staff: bool,
    products: QuerySet[DataProduct] | None,
) -> Annotation:
    """Replace an annotation's text, keeping the old text as a revision.

    Only the text and timestamp_modified change (reference 2.12); saving the
    same text again changes nothing and records nothing.
    """
    clean_text = annotation_text_clean(text)
    with transaction.atomic():
        # The row lock serialises concurrent edits, so each revision holds the
        # text its edit really replaced.
        annotation = annotation_editable(
            annotation_id,
            editor=editor,
            editor_is_staff=editor_is_staff,
            products=products,
            lock=True,
        )
        if clean_text == annotation.annotation_text:
            return annotation
        now = timezone.now()
        AnnotationRevision.objects.create(
            annotation=annotation,
            annotation_text=annotation.annotation_text,
            written_by=annotation.last_editor,
            written_at=annotation.timestamp_modified,
            edited_by=editor.name,
            edited_at=now,
        )
        annotation.annotation_text = clean_text
        annotation.timestamp_modified = now
        annotation.modified_by = editor.name
        annotation.save(update_fields=["annotation_text", "timestamp_modified", "modified_by"])
    return annotation


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", bool: "a boolean", float: "a number"}
    names.update({int: "a number", str: "a string", type(None): "null"})
    return names.get(type(value), type(value).__name__)
