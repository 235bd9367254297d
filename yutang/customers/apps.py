from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "yutang.customers"
    label = "customers"
    verbose_name = "Customers"
