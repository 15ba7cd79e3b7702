"""The SKA DPD API compatibility routes, served at the root (reference 1.1).

Each route module owns its views; this file only joins them.
"""

from importlib import import_module

_ROUTE_MODULES = (
    "dpd.api.search_urls",  # status, search, filter, grid config, labels, layout
    "dpd.api.product_urls",  # metadata, download, ingest, re-index, schema, docs
)

urlpatterns: list = []
for _name in _ROUTE_MODULES:
    try:
        urlpatterns += import_module(_name).urlpatterns
    except ModuleNotFoundError as exc:  # a route module not written yet
        if exc.name != _name:
            raise
