from __future__ import annotations

import importlib
import pkgutil

from django.apps import AppConfig, apps


class AnalyticsConfig(AppConfig):
    name = "yutang.analytics"
    label = "analytics"

    def ready(self) -> None:
        # Sections fed by lower floors (acquisition, messaging, journeys) are registered by
        # modules in yutang/analytics/providers/, named after the app they read; a module is
        # loaded only when that app is installed, so analytics never needs editing to add one.
        from yutang.analytics import providers

        for info in pkgutil.iter_modules(providers.__path__):
            if apps.is_installed(f"yutang.{info.name}"):
                module = importlib.import_module(f"{providers.__name__}.{info.name}")
                module.register()
