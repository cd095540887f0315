"""A small Django site over the AHSP tables, configured from the environment
the harness gives a target it starts: PGBOUNCER_URL (or DATABASE_URL),
REDIS_URL and PORT, plus DJANGO_SECRET_KEY from the suite's `[target] env`.

Like the AHSP application: PostgreSQL behind PgBouncer in transaction mode,
sessions and cache in Redis, Django's own login with CSRF.
"""

import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "projects",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "ahspsite.urls"
WSGI_APPLICATION = "ahspsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]


def _database(url):
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname,
        "PORT": parts.port or 5432,
        # PgBouncer in transaction mode: a server connection is not the same
        # from one transaction to the next, so no named cursors and no
        # prepared statements.
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": {"prepare_threshold": None},
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


DATABASES = {
    "default": _database(os.environ.get("PGBOUNCER_URL") or os.environ["DATABASE_URL"]),
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["REDIS_URL"],
        "TIMEOUT": 300,
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.cache"

AUTH_USER_MODEL = "projects.User"
# The seeded hashes are Django's pbkdf2_sha256 at the data set's cost; the
# hasher checks each at its own cost and never rewrites it (Django would
# upgrade it to its default on the first login, changing the cost under test).
PASSWORD_HASHERS = ["projects.hashers.SeededPBKDF2PasswordHasher"]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/dashboard/"

USE_TZ = True
TIME_ZONE = "Asia/Jakarta"
LANGUAGE_CODE = "id"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
