from django.contrib import admin
from django.urls import include, path

from yutang.acquisition import views as acquisition_views
from yutang.api.urls import urls as api_urls
from yutang.messaging import views as messaging_views

urlpatterns = [
    path("api/v1/", api_urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("l/<str:code>", acquisition_views.short_link, name="acquisition-short-link"),
    path("c/<str:token>/", acquisition_views.landing, name="acquisition-landing"),
    path("c/<str:token>/qr.png", acquisition_views.landing_qr, name="acquisition-landing-qr"),
    path("u/<str:token>", messaging_views.unsubscribe, name="messaging-unsubscribe"),
    path("", include("yutang.console.urls")),
]
