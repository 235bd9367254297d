"""The one settings module. Everything that differs between machines comes from YUTANG_* variables.

Safe local defaults let `make demo` run with no configuration; in production
(`YUTANG_ENV=production`) the process refuses to start with a default or missing secret and
names the variable to set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("YUTANG_VAR_DIR", BASE_DIR / "var"))

# Defaults usable only in development: production refuses them (see `_require_secret`).
DEV_SECRET_KEY = "yutang-development-secret-key-not-for-production"
DEV_PII_KEY = "yutang-development-pii-key-not-for-production"

YUTANG_ENV = os.environ.get("YUTANG_ENV", "development").strip().lower()
if YUTANG_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(
        f"YUTANG_ENV must be 'development' or 'production', not {YUTANG_ENV!r}."
    )
IS_PRODUCTION = YUTANG_ENV == "production"


def _require_secret(name: str, dev_default: str, min_length: int = 32) -> str:
    value = os.environ.get(name, "").strip()
    if IS_PRODUCTION:
        if not value or value == dev_default:
            raise ImproperlyConfigured(
                f"{name} is missing or uses the development default; set {name} to a random "
                f"value of at least {min_length} characters before starting in production."
            )
        if len(value) < min_length:
            raise ImproperlyConfigured(f"{name} must be at least {min_length} characters long.")
        return value
    return value or dev_default


SECRET_KEY = _require_secret("YUTANG_SECRET_KEY", DEV_SECRET_KEY)
PII_KEY = _require_secret("YUTANG_PII_KEY", DEV_PII_KEY)

# Debug pages are opt-in even in development: `yutang serve` must behave like production.
DEBUG = os.environ.get("YUTANG_DEBUG", "0") == "1" and not IS_PRODUCTION

ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("YUTANG_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
    if host.strip()
]
CSRF_TRUSTED_ORIGINS = [
    origin.strip()
    for origin in os.environ.get("YUTANG_CSRF_TRUSTED_ORIGINS", "").split(",")
    if origin.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_tasks",
    "django_tasks_db",
    "yutang.core",
    "yutang.customers",
    "yutang.events",
    "yutang.commerce",
    "yutang.segments",
    "yutang.carriers",
    "yutang.messaging",
    "yutang.acquisition",
    "yutang.analytics",
    "yutang.journeys",
    "yutang.api",
    "yutang.console",
    "yutang.simulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "yutang.console.middleware.ConsoleLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "yutang.console.middleware.CurrentStaffMiddleware",
]

ROOT_URLCONF = "yutang.urls"
WSGI_APPLICATION = "yutang.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "yutang.console.context.console",
            ],
        },
    }
]

# --- Database -------------------------------------------------------------------------------

DEFAULT_SQLITE_PATH = VAR_DIR / "yutang.sqlite3"
DATABASE_URL = (
    os.environ.get("YUTANG_DATABASE_URL", "").strip() or f"sqlite:///{DEFAULT_SQLITE_PATH}"
)


def _database_from_url(url: str) -> dict[str, Any]:
    if url.startswith(("postgresql://", "postgres://")):
        config = dict(dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True))
        config["ENGINE"] = "django.db.backends.postgresql"
        return config
    if url.startswith("sqlite:"):
        config = dict(dj_database_url.parse(url))
        name = str(config["NAME"])
        if name != ":memory:":
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        # WAL lets the web process and a worker share the file; a busy timeout makes a
        # writer wait for the other instead of failing; IMMEDIATE transactions take the write
        # lock up front so two writers never deadlock upgrading a read lock.
        config["OPTIONS"] = {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=20000; "
                "PRAGMA synchronous=NORMAL;"
            ),
        }
        config["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
        return config
    raise ImproperlyConfigured(
        "YUTANG_DATABASE_URL must start with 'sqlite:///' or 'postgresql://'; "
        f"got a value starting with {url.split(':', 1)[0]!r}."
    )


DATABASES = {"default": _database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache: WeCom access tokens and the WeCom rate-limit windows ------------------------------
#
# Unset (or `locmem://`): Django's in-process memory cache. Each process then keeps its own
# access token (WeCom answers every process with the same token, so this is correct) and its
# own rate-limit window (each process stays under WeCom's 10,000 calls a minute per API; two
# processes together could exceed it, and the client backs off on WeCom's 45009). Right for
# one web and one worker process of a small brand. `redis://host:6379/0` (or `rediss://`):
# Django's Redis cache; every process shares one token and one window per corp and API
# (atomic INCR). Set it whenever several workers or web processes call WeCom. Django's
# database and file caches are not offered: their `incr` is a read-modify-write, so two
# processes counting at once would lose calls and the shared limit would not hold.
CACHE_URL = os.environ.get("YUTANG_CACHE_URL", "").strip()


def _cache_from_url(url: str) -> dict[str, Any]:
    if url in ("", "locmem://"):
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "yutang"}
    if url.startswith(("redis://", "rediss://", "unix://")):
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "yutang",
        }
    raise ImproperlyConfigured(
        "YUTANG_CACHE_URL must be empty, 'locmem://', or a 'redis://' / 'rediss://' URL; "
        f"got a value starting with {url.split(':', 1)[0]!r}."
    )


CACHES = {"default": _cache_from_url(CACHE_URL)}

# --- Background work ------------------------------------------------------------------------

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default"],
    }
}

# --- Auth, sessions, security ---------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "console:login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if IS_PRODUCTION:
    SESSION_COOKIE_SECURE = os.environ.get("YUTANG_SECURE_COOKIES", "1") == "1"
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- Internationalisation -------------------------------------------------------------------

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "yutang" / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = os.environ.get("YUTANG_TIME_ZONE", "Asia/Shanghai")

# --- Static files ---------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("YUTANG_STATIC_ROOT", VAR_DIR / "static"))
# WhiteNoise warns about a missing STATIC_ROOT (an error under the test suite's warning
# policy) until `collectstatic` has run once, so make sure it exists.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Compressed but not hashed: works with or without `collectstatic`, so tests and the
        # served console render the same templates.
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True

# --- Logging: never log secrets or request bodies --------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("YUTANG_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django_tasks_db": {"level": "INFO"},
    },
}

# --- Yutang ---------------------------------------------------------------------------------

# The public address of this Yutang (scheme and host, no trailing slash), for links that leave
# it: the one-click unsubscribe link in marketing email. Empty: email offers only `mailto:`.
PUBLIC_URL = os.environ.get("YUTANG_PUBLIC_URL", "").strip().rstrip("/")
if PUBLIC_URL and not PUBLIC_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("YUTANG_PUBLIC_URL must start with https:// (or http://).")

# Seconds after which a worker that has not written a heartbeat counts as gone.
YUTANG_WORKER_STALE_AFTER = int(os.environ.get("YUTANG_WORKER_STALE_AFTER", "60"))
