from django.apps import AppConfig


class AcquisitionConfig(AppConfig):
    name = "yutang.acquisition"
    label = "acquisition"
    verbose_name = "Acquisition"
