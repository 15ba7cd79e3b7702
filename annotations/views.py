"""Server-rendered annotation pages: a product page with its annotations and
their edit history, an edit page, and the recent annotations across products.

Plain Django forms with CSRF, usable without JavaScript. Reading needs no
account: a product page and the recent annotations show what the caller may
see (anonymous: the products of no access group), so a newcomer reaches a
product from the home page without signing in. Adding or editing an
annotation needs a signed-in user. Refusals are HTML pages (the project's
default 403/404 handlers answer JSON for the API).
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods

from annotations import services
from annotations.forms import AnnotationForm
from annotations.models import Annotation
from annotations.presentation import product_summary
from dpd.access import caller_identity, hidden_sources_now, visible_products
from dpd.models import DLM_SOURCES, DataProduct
from dpd.refusal import refusal_page

# The pages' own login form: the admin login admits staff only, and the
# pages are for every signed-in user.
PAGES_LOGIN_URL = reverse_lazy("pages-login")
RECENT_PER_PAGE = 25
NO_PRODUCT = "There is no data product with this uid, or you may not see it."
DLM_UNAVAILABLE = (
    "The Data Lifecycle Manager does not answer now, so its items are not shown; /status says why."
)


def _can_edit(request: HttpRequest, annotation: Annotation) -> bool:
    identity = caller_identity(request)
    return request.user.is_staff or (identity is not None and annotation.is_written_by(identity))


def _render_product(
    request: HttpRequest, product: DataProduct, form: AnnotationForm, status: int = 200
) -> HttpResponse:
    # As /dataproductmetadata: no DLM copy while the DLM does not answer.
    hidden = hidden_sources_now(include_retired=True)
    annotations = list(
        Annotation.objects.for_product(product.uid)
        .order_by("-timestamp_created", "-annotation_id")
        .prefetch_related("revisions")
    )
    for annotation in annotations:
        annotation.editable = _can_edit(request, annotation)
    context = {
        "product": product,
        "summary": product_summary(product),
        "annotations": annotations,
        "form": form,
        "flows": list(product.sdp_flow_rows().order_by("key")),
        # Where the DLM holds copies of its execution block (issue 19), as last synced.
        "dlm_copies": product.dlm_copies(visible_products(request, hidden_sources=hidden)),
        "dlm_unavailable": DLM_UNAVAILABLE if DataProduct.Source.DLM in hidden else "",
    }
    return render(request, "annotations/product_detail.html", context, status=status)


@require_http_methods(["GET", "HEAD"])
def product_page(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    product = visible_products(request).filter(uid=uid).first()
    if product is None:
        return refusal_page(request, 404, NO_PRODUCT)
    if product.source in DLM_SOURCES and product.source in hidden_sources_now(include_retired=True):
        return refusal_page(request, 503, DLM_UNAVAILABLE)
    return _render_product(request, product, AnnotationForm())


@login_required(login_url=PAGES_LOGIN_URL)
@require_http_methods(["GET", "POST"])
def annotation_add(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    if request.method == "GET":
        # The address a form with errors is shown at: reloading it from the
        # address bar leads back to the product page, not to a blank 405.
        return redirect("product-page", uid=uid)
    products = visible_products(request)
    product = products.filter(uid=uid).first()
    if product is None:
        return refusal_page(request, 404, NO_PRODUCT)
    form = AnnotationForm(request.POST)
    if not form.is_valid():
        return _render_product(request, product, form, status=400)
    annotation = services.annotation_create(
        product_uid=product.uid,
        text=form.cleaned_data["annotation_text"],
        author=caller_identity(request),
        products=products,
    )
    messages.success(request, "Annotation saved.")
    return redirect(annotation.get_absolute_url())


@login_required(login_url=PAGES_LOGIN_URL)
@require_http_methods(["GET", "HEAD", "POST"])
def annotation_edit(request: HttpRequest, annotation_id: int) -> HttpResponse:
    products = visible_products(request)
    rules = {
        "editor": caller_identity(request),
        "editor_is_staff": request.user.is_staff,
        "products": products,
    }
    try:
        annotation = services.annotation_editable(annotation_id, **rules)
    except services.AnnotationNotFound:
        return refusal_page(request, 404, "There is no such annotation, or you may not see it.")
    except services.NotAnnotationAuthor as exc:
        return refusal_page(request, 403, exc.message)
    status = 200
    if request.method == "POST":
        form = AnnotationForm(request.POST)
        if form.is_valid():
            services.annotation_update(
                annotation_id=annotation.annotation_id,
                text=form.cleaned_data["annotation_text"],
                **rules,
            )
            messages.success(request, "Annotation updated; the previous text is in its history.")
            return redirect(annotation.get_absolute_url())
        status = 400
    else:
        form = AnnotationForm(initial={"annotation_text": annotation.annotation_text})
    product = products.get(uid=annotation.data_product_uid)
    context = {
        "annotation": annotation,
        "revisions": annotation.revisions.all(),
        "product": product,
        "summary": product_summary(product),
        "form": form,
    }
    return render(request, "annotations/annotation_edit.html", context, status=status)


@require_http_methods(["GET", "HEAD"])
def recent_annotations(request: HttpRequest) -> HttpResponse:
    rows = Annotation.objects.on_products(visible_products(request)).order_by(
        "-timestamp_modified", "-annotation_id"
    )
    page = Paginator(rows, RECENT_PER_PAGE).get_page(request.GET.get("page"))
    uids = {annotation.data_product_uid for annotation in page}
    products = {product.uid: product for product in DataProduct.objects.filter(uid__in=uids)}
    for annotation in page:
        annotation.product = products.get(annotation.data_product_uid)
    return render(request, "annotations/recent.html", {"page": page})


class LogoutPage(auth_views.LogoutView):
    """Django's logout logs out on POST only (a GET that did could be set off
    by any other site); a GET, from a link or a typed address, gets a page
    with the logout button instead of an empty 405."""

    http_method_names = ["get", "head", "post", "options"]
    next_page = "pages-login"
    template_name = "annotations/logout.html"

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect(self.next_page)
        return super().get(request, *args, **kwargs)
