from django.apps import AppConfig


class AcquisitionConfig(AppConfig):
    name = "yutang.acquisition"
    label = "acquisition"
    verbose_name = "Acquisition"

    def ready(self) -> None:
        from yutang.acquisition import merging

        merging.register()
