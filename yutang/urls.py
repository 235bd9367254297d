from django.contrib import admin
from django.urls import include, path

from yutang.api.urls import urls as api_urls

urlpatterns = [
    path("api/v1/", api_urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("", include("yutang.console.urls")),
]
