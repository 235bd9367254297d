from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "yutang.api"
    label = "api"
    verbose_name = "Yutang REST API"
