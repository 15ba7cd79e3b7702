"""Curators' view of annotations: find them by product uid or user, filter
by date, read each one's edit history. Edits made here go through the same
service as the pages and the API, so they are recorded as revisions too."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from annotations import services
from annotations.models import Annotation, AnnotationRevision
from dpd.access import caller_identity


class AnnotationRevisionInline(admin.TabularInline):
    model = AnnotationRevision
    fields = readonly_fields = [
        "edited_at",
        "edited_by",
        "written_by",
        "written_at",
        "annotation_text",
    ]
    extra = 0
    can_delete = False
    ordering = ["-edited_at"]

    def has_add_permission(self, request: HttpRequest, obj: Annotation | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Annotation | None = None) -> bool:
        return False


class AnnotationAdminForm(forms.ModelForm):
    # As written, like the pages and the API: no trimming.
    annotation_text = forms.CharField(widget=forms.Textarea, strip=False)

    class Meta:
        model = Annotation
        fields = ["annotation_text"]

    def clean_annotation_text(self) -> str:
        try:
            return services.annotation_text_clean(self.cleaned_data["annotation_text"])
        except services.InvalidAnnotation as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    form = AnnotationAdminForm
    list_display = [
        "annotation_id",
        "data_product_uid",
        "user_principal_name",
        "short_text",
        "timestamp_created",
        "timestamp_modified",
    ]
    list_filter = ["author_method", "timestamp_created", "timestamp_modified"]
    search_fields = ["data_product_uid", "user_principal_name", "annotation_text"]
    readonly_fields = [
        "annotation_id",
        "data_product_uid",
        "user_principal_name",
        "author_method",
        "author_subject",
        "timestamp_created",
        "timestamp_modified",
        "modified_by",
    ]
    fields = [*readonly_fields, "annotation_text"]
    date_hierarchy = "timestamp_modified"
    inlines = [AnnotationRevisionInline]

    @admin.display(description="Text")
    def short_text(self, obj: Annotation) -> str:
        text = obj.annotation_text
        return text if len(text) <= 80 else f"{text[:79]}…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Annotations are written on product pages or through the API, by their author.
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Deleting an annotation would delete its history: never rewritten.
        return False

    def save_model(self, request: HttpRequest, obj: Annotation, form, change: bool) -> None:
        services.annotation_update(
            annotation_id=obj.annotation_id,
            text=obj.annotation_text,
            editor=caller_identity(request),
            editor_is_staff=request.user.is_staff,
            products=None,
        )


@admin.register(AnnotationRevision)
class AnnotationRevisionAdmin(admin.ModelAdmin):
    list_display = ["annotation", "edited_at", "edited_by", "written_by", "written_at"]
    list_filter = ["edited_at"]
    search_fields = ["annotation__data_product_uid", "edited_by", "written_by"]
    list_select_related = ["annotation"]
    readonly_fields = [
        "annotation",
        "annotation_text",
        "written_by",
        "written_at",
        "edited_by",
        "edited_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
