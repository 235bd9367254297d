"""Providers of the overview's extension sections, one module per app they read.

A module here is named after an installed app (``acquisition.py`` for ``yutang.acquisition``),
imports that app's services (analytics sits on a higher floor, so it may) and defines
``register()``, which calls ``yutang.analytics.sections.register_overview_section``. Modules
whose app is not installed are skipped. See docs/metrics.md, "Extension sections"."""
