from django.contrib.auth import views as auth_views
from django.urls import path

from projects import views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("detail_project/<int:project_id>/rekap-rab/", views.rekap_rab, name="rekap-rab"),
    path(
        "api/project/<int:project_id>/list-pekerjaan/tree/",
        views.pekerjaan_tree,
        name="pekerjaan-tree",
    ),
    path("health/ready/", views.ready, name="ready"),
]
