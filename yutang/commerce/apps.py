from django.apps import AppConfig


class CommerceConfig(AppConfig):
    name = "yutang.commerce"
    label = "commerce"
    verbose_name = "Commerce"

    def ready(self) -> None:
        from yutang.commerce import imports, merging, sample_data
        from yutang.core.sample_data import register_extension

        merging.register()
        imports.register()
        register_extension(sample_data.ensure_customers)
