from django.apps import AppConfig


class CommerceConfig(AppConfig):
    name = "yutang.commerce"
    label = "commerce"
    verbose_name = "Commerce"

    def ready(self) -> None:
        from yutang.commerce import imports, merging

        merging.register()
        imports.register()
