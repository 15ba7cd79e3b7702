# Production image: gunicorn serves the API, `manage.py qcluster` runs background work.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dpd ./dpd
COPY indexing ./indexing
COPY annotations ./annotations
COPY dlm_bridge ./dlm_bridge
RUN pip install --no-cache-dir .
COPY . .
RUN DJANGO_SECRET_KEY=build-only python manage.py collectstatic --no-input -v0
EXPOSE 8000
CMD ["python", "manage.py", "runservice", "--bind", "0.0.0.0:8000"]
