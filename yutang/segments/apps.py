from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "yutang.segments"
    label = "segments"
    verbose_name = "Segments"

    def ready(self) -> None:
        from yutang.core.worker import register_loop
        from yutang.segments import services

        register_loop("segments.refresh", services.refresh_due_segments)
