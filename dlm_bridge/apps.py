from django.apps import AppConfig


class DlmBridgeConfig(AppConfig):
    name = "dlm_bridge"
    verbose_name = "Data Lifecycle Manager bridge"

    def ready(self) -> None:
        # /readyz and /metrics report the DLM's reachability (never required).
        from django.conf import settings

        from dlm_bridge.services import hidden_sources
        from dpd.access import set_hidden_sources
        from dpd.ops.probes import set_dlm_probe

        if settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED:
            set_dlm_probe(_reachability)
        # The product pages leave out the DLM's rows while it does not answer,
        # as the API does (with the interface off it hides nothing).
        set_hidden_sources(hidden_sources)


def _reachability() -> tuple[bool, str | None]:
    from dlm_bridge import probe

    answer = probe.current()
    return answer.serves_items, None if answer.serves_items else answer.error
