"""Operations endpoints: /healthz, /readyz and /metrics, and the per-request
log line and metrics.

Part of dpd's interface (dpd/__init__.py): the metrics read the indexing app's
tables. The three endpoints are answered by `OpsEndpointsMiddleware`, the
first middleware, not by the URLconf: orchestrators probe and scrape a pod by
its address (`Host: 10.1.2.3:8000`), which ALLOWED_HOSTS would refuse with a
400, and with DJANGO_SECURE_SSL_REDIRECT a plain-HTTP probe would be
redirected. Answering first also keeps /healthz to a few microseconds of
Python, whatever the rest of the stack costs.
"""
