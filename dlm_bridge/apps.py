from django.apps import AppConfig


class DlmBridgeConfig(AppConfig):
    name = "dlm_bridge"
    verbose_name = "Data Lifecycle Manager bridge"
