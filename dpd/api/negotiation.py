"""Content negotiation that never answers 406.

The SKA DPD API answers JSON whatever `Accept` says (FastAPI ignores it), and
scripts send all sorts (`text/plain`, `application/xml`, a tar type to
/download). A request whose Accept no renderer of the view satisfies gets the
view's first renderer (JSON; the tar stream of /download is not a renderer)
instead of 406. What can be satisfied still is: the browsable API for
browsers, CSV/TSV where offered.
"""

from __future__ import annotations

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation


class JSONFallbackNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type
