# The DPD back end's image. One image, two sides, chosen by the command:
#   docker run IMAGE                                   # runservice: web + worker (one machine)
#   docker run IMAGE runweb --bind 0.0.0.0:8000        # web side only (Kubernetes web pods)
#   docker run --no-healthcheck IMAGE runworker        # worker side only (one worker pod)
# docs/deployment.md says how to run it; deploy/kubernetes/ has the manifests.

# --- build: resolve and install the dependencies from pyproject.toml --------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A venv without pip or setuptools: the build's own pip installs into it, so
# no packaging tool ends up in the final image.
RUN python -m venv --without-pip /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dpd ./dpd
COPY indexing ./indexing
COPY annotations ./annotations
COPY dlm_bridge ./dlm_bridge
RUN pip --python /opt/venv/bin/python install --no-compile .

# --- final: the virtualenv and the code, run by an unprivileged user ---------
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
# No pip, setuptools or wheel beside the application either.
RUN python -m pip uninstall -y -q pip setuptools wheel \
    && groupadd --system --gid 10001 dpd \
    && useradd --system --uid 10001 --gid dpd --home-dir /app --shell /usr/sbin/nologin dpd
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The code runs from /app (templates and var/ live beside it, BASE_DIR); the
# installed copy in the venv gives the package version that /status reports.
COPY --chown=root:root manage.py pyproject.toml README.md ./
COPY --chown=root:root dpd ./dpd
COPY --chown=root:root indexing ./indexing
COPY --chown=root:root annotations ./annotations
COPY --chown=root:root dlm_bridge ./dlm_bridge
COPY --chown=root:root templates ./templates
COPY --chown=root:root sample_data ./sample_data
# Static files are collected at build time and served by whitenoise; var/ is
# the only place the service writes (the embedded SQLite file of a demo run).
RUN python manage.py collectstatic --no-input -v0 \
    && mkdir -p var \
    && chown dpd:dpd var \
    && rm -f var/dpd.sqlite3*
USER dpd:dpd
EXPOSE 8000
# The web side's liveness (the worker side serves no HTTP: run it with
# --no-healthcheck, or rely on the orchestrator's own probes).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["python", "manage.py"]
CMD ["runservice", "--bind", "0.0.0.0:8000"]
