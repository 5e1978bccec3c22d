"""The seed's Django tutorial app (add_to_cart + cart.html) as one file.

Served by Debian's gunicorn, one sync worker:
    BENCH_SESSION_ENGINE=file|db|cache BENCH_DATA_DIR=/tmp/x gunicorn --chdir bench/django app:application
The db engine keeps sessions in SQLite (the table is created at start-up);
the cache engine uses Django's default cache, LocMemCache, in the worker.
"""
import os

import django
from django.conf import settings

ENGINE = os.environ.get("BENCH_SESSION_ENGINE", "file")
DATA_DIR = os.environ.get("BENCH_DATA_DIR", "/tmp/satchel-bench-django")
HERE = os.path.dirname(os.path.abspath(__file__))
CART_MAX = 20
os.makedirs(DATA_DIR, exist_ok=True)

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-secret-bench-secret-bench-secret-bench-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.sessions"],
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [os.path.join(HERE, "templates")],
        }
    ],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(DATA_DIR, "db.sqlite3"),
        }
    },
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    SESSION_ENGINE={
        "file": "django.contrib.sessions.backends.file",
        "db": "django.contrib.sessions.backends.db",
        "cache": "django.contrib.sessions.backends.cache",
    }[ENGINE],
    SESSION_FILE_PATH=DATA_DIR,
    USE_TZ=True,
)
django.setup()

from django.http import HttpResponse  # noqa: E402
from django.shortcuts import render  # noqa: E402
from django.urls import path  # noqa: E402


def add_to_cart(request, item):
    # The seed's view, keeping the last CART_MAX items.
    cart = request.session.get("cart", [])
    cart.append(item)
    request.session["cart"] = cart[-CART_MAX:]
    return render(request, "cart/cart.html", {"cart": request.session["cart"]})


def append(request, item):
    # The same read-modify-write without the cap: counts lost updates.
    cart = request.session.get("cart", [])
    cart.append(item)
    request.session["cart"] = cart
    return HttpResponse(str(len(cart)), content_type="text/plain")


def show_cart(request):
    return render(request, "cart/cart.html", {"cart": request.session.get("cart", [])})


def count(request):
    return HttpResponse(str(len(request.session.get("cart", []))), content_type="text/plain")


urlpatterns = [
    path("add_to_cart/<item>/", add_to_cart, name="add_to_cart"),
    path("append/<item>/", append),
    path("cart/", show_cart),
    path("count/", count),
]

if ENGINE == "db":
    from django.core.management import call_command

    call_command("migrate", "sessions", verbosity=0, interactive=False)

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
