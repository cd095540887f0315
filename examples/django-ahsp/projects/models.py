"""The AHSP tables the harness seeds, read as they are (unmanaged: the
schema is the data set's, not this app's migrations)."""

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models


class User(AbstractBaseUser):
    username = models.CharField(max_length=150, unique=True)
    email = models.CharField(max_length=254)
    first_name = models.CharField(max_length=150)
    last_name = models.CharField(max_length=150)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField()

    objects = BaseUserManager()

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["email"]

    class Meta:
        managed = False
        db_table = "users"


class Project(models.Model):
    owner = models.ForeignKey(User, on_delete=models.DO_NOTHING, related_name="+")
    name = models.CharField(max_length=200)
    lokasi = models.CharField(max_length=200)
    tahun = models.IntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "projects"


class ProjectMember(models.Model):
    project = models.ForeignKey(Project, on_delete=models.DO_NOTHING, related_name="members")
    user = models.ForeignKey(User, on_delete=models.DO_NOTHING, related_name="+")
    role = models.CharField(max_length=20)

    class Meta:
        managed = False
        db_table = "project_members"
