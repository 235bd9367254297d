from django.apps import AppConfig


class AcquisitionConfig(AppConfig):
    name = "yutang.acquisition"
    label = "acquisition"
    verbose_name = "Acquisition"

    def ready(self) -> None:
        from yutang.acquisition import carrier_hooks, merging, services
        from yutang.core.worker import register_loop

        merging.register()
        carrier_hooks.register()
        register_loop("acquisition.carrier_sync", services.carrier_sync_loop)
