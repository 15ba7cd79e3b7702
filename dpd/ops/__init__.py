"""Operations endpoints: /healthz, /readyz and /metrics, and the per-request
log line and metrics.

Part of dpd's interface (dpd/__init__.py): the metrics read the indexing app's
tables. None of the three goes through the URLconf: orchestrators probe and
scrape a pod by its address (`Host: 10.1.2.3:8000`), which ALLOWED_HOSTS
would refuse with a 400, and with DJANGO_SECURE_SSL_REDIRECT a plain-HTTP
probe would be redirected. /readyz and /metrics are answered by
`OpsEndpointsMiddleware`, the first middleware; /healthz earlier still, by
the WSGI application itself (dpd.wsgi.answer_health), so that it costs a
few microseconds of Python whatever the rest of the stack costs.
"""
