import os

from django.apps import AppConfig
from django.utils import timezone
from django.utils.dateparse import parse_datetime

# Not a setting: `manage.py runservice` writes when the service started into
# its children's environment, so that every gunicorn worker (each one loads
# the project on its own) reports the same start-up time.
SERVICE_STARTED_AT = "DPD_SERVICE_STARTED_AT"


class CatalogueConfig(AppConfig):
    name = "dpd"
    label = "dpd"
    verbose_name = "Data product catalogue"

    def ready(self) -> None:
        # /status reports when the API started (reference 2.1): the service's
        # start under runservice, otherwise this process's.
        try:
            started = parse_datetime(os.environ.get(SERVICE_STARTED_AT, ""))
        except ValueError:
            started = None
        self.startup_time = started or timezone.now()
