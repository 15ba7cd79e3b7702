from django.apps import AppConfig
from django.utils import timezone


class CatalogueConfig(AppConfig):
    name = "dpd"
    label = "dpd"
    verbose_name = "Data product catalogue"

    def ready(self) -> None:
        # /status reports when this process started serving (reference 2.1).
        self.startup_time = timezone.now()
