from django.apps import AppConfig


class DlmBridgeConfig(AppConfig):
    name = "dlm_bridge"
    verbose_name = "Data Lifecycle Manager bridge"

    def ready(self) -> None:
        # /readyz and /metrics report the DLM's reachability (never required).
        from django.conf import settings

        from dpd.ops.probes import set_dlm_probe

        if settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED:
            set_dlm_probe(_reachability)


def _reachability() -> tuple[bool, str | None]:
    from dlm_bridge import probe

    answer = probe.current()
    return answer.serves_items, None if answer.serves_items else answer.error
