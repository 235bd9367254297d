import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yutang.settings")
application = get_wsgi_application()

# Everything loaded so far (Django, the apps, their modules) lives as long as the process:
# move it out of the cyclic garbage collector's reach. Otherwise every full collection — a
# 1,000-event API batch allocates enough objects to trigger several — walks all of it again
# (measured: about a fifth of the server's CPU per ingested event; bench/RESULTS.md,
# 2026-12-06). gunicorn loads this module before it forks, so workers inherit the frozen
# objects and also keep sharing their memory pages with the arbiter.
gc.collect()
gc.freeze()
