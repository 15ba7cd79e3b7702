"""The project package and the catalogue app (app label "dpd").

Which app may import which; the arrows run one way, towards dpd:

    annotations ──┐
    indexing ─────┼──>  dpd (the catalogue: models, metadata, search, access,
    dlm_bridge ───┘          authentication, the pages' refusal page, ...)

- The catalogue's own modules (everything in dpd but its interface, below)
  import no feature app, not even through the app registry: what a feature
  contributes to them is passed in by the caller (the grid's "annotation"
  filter is `annotations.services.annotated_product_uids`, handed to
  `dpd.search.filter_products` by the API view).
- A feature app imports dpd's modules (through their public functions) and
  no other feature app.
- dpd's interface wires the features in and may call their public functions:
  `dpd.api` (the SKA DPD API's views), `dpd.status` (GET /status),
  `dpd.home` (the home page at /, which counts annotations and runs),
  `dpd.urls`, `dpd.settings`, `dpd.management` (runservice), `dpd.service_sides`
  (the worker side's start-up steps), `dpd.ops` (health and metrics), and
  `dpd.sdp_watcher`, the background process behind `manage.py sdpwatch`,
  which holds its writer's slot through `indexing.leader`'s claims (that
  claim mechanism serves two apps now and belongs in dpd: a follow-up).
- What several apps share goes into dpd (e.g. `dpd.refusal`), never into the
  first feature app that needed it.

tests/test_app_dependencies.py checks these rules on every module.
"""
