from django.contrib.auth import views as auth_views
from django.urls import path

from yutang.console import customer_views as cv
from yutang.console import journey_views as jv
from yutang.console import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("brand/switch/", views.switch_brand, name="switch_brand"),
    path("brand/settings/", views.brand_settings, name="brand_settings"),
    path("stores/", views.stores, name="stores"),
    path("stores/new/", views.store_create, name="store_create"),
    path("stores/<int:store_id>/", views.store_edit, name="store_edit"),
    path("stores/<int:store_id>/delete/", views.store_delete, name="store_delete"),
    path("staff/", views.staff_list, name="staff"),
    path("staff/new/", views.staff_create, name="staff_create"),
    path("staff/<int:staff_id>/", views.staff_edit, name="staff_edit"),
    path("staff/<int:staff_id>/delete/", views.staff_delete, name="staff_delete"),
    path("carrier-accounts/", views.carrier_accounts, name="carrier_accounts"),
    path("carrier-accounts/new/", views.carrier_account_create, name="carrier_account_create"),
    path(
        "carrier-accounts/<int:account_id>/",
        views.carrier_account_edit,
        name="carrier_account_edit",
    ),
    path(
        "carrier-accounts/<int:account_id>/delete/",
        views.carrier_account_delete,
        name="carrier_account_delete",
    ),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("audit/", views.audit, name="audit"),
    path("customers/", cv.customer_list, name="customers"),
    path("customers/views/", cv.saved_view_create, name="saved_view_create"),
    path("customers/views/<int:view_id>/delete/", cv.saved_view_delete, name="saved_view_delete"),
    path("customers/merges/", cv.merge_queue, name="merges"),
    path("customers/merges/<int:candidate_id>/decide/", cv.merge_decide, name="merge_decide"),
    path("merges/<int:merge_id>/undo/", cv.merge_undo, name="merge_undo"),
    path("customers/<int:customer_id>/", cv.customer_detail, name="customer"),
    path("customers/<int:customer_id>/tags/", cv.customer_tags, name="customer_tags"),
    path("customers/<int:customer_id>/notes/", cv.customer_note, name="customer_note"),
    path("customers/<int:customer_id>/consent/", cv.customer_consent, name="customer_consent"),
    path("imports/", cv.import_list, name="imports"),
    path("imports/<int:job_id>/", cv.import_detail, name="import"),
    path("imports/<int:job_id>/start/", cv.import_start, name="import_start"),
    path("imports/<int:job_id>/errors/", cv.import_errors, name="import_errors"),
    path("journeys/", jv.journey_list, name="journeys"),
    path("journeys/new/", jv.journey_create, name="journey_create"),
    path("journeys/<int:journey_id>/", jv.journey_detail, name="journey"),
    path("journeys/<int:journey_id>/edit/", jv.journey_edit, name="journey_edit"),
    path("journeys/<int:journey_id>/action/", jv.journey_action, name="journey_action"),
    path("tasks/", jv.task_inbox, name="tasks"),
    path("tasks/<int:task_id>/complete/", jv.task_complete, name="task_complete"),
]
