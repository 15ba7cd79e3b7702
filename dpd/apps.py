from django.apps import AppConfig


class CatalogueConfig(AppConfig):
    name = "dpd"
    label = "dpd"
    verbose_name = "Data product catalogue"
