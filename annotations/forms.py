"""The annotation form of the server-rendered pages; its rules are the
services' rules, so a page and the API refuse the same texts."""

from __future__ import annotations

from django import forms

from annotations import services


class AnnotationForm(forms.Form):
    # strip=False: the text is stored as the author wrote it; the service
    # refuses text that is only whitespace.
    annotation_text = forms.CharField(
        label="Annotation",
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
    )

    def clean_annotation_text(self) -> str:
        try:
            return services.annotation_text_clean(self.cleaned_data["annotation_text"])
        except services.InvalidAnnotation as exc:
            raise forms.ValidationError(exc.message) from None
