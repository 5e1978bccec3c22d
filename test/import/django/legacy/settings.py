"""
A minimal Django project with sessions only, configured from the environment
by test/import/django.test.ts:

  DJANGO_SECRET_KEY            SECRET_KEY
  DJANGO_SESSION_ENGINE        'db' or 'file'
  DJANGO_DB                    'sqlite' (DJANGO_SQLITE_PATH) or 'postgres'
                               (database 'test' on 127.0.0.1, tables in schema DJANGO_PG_SCHEMA)
  DJANGO_SESSION_FILE_PATH     SESSION_FILE_PATH for the file engine
  DJANGO_HASHING               DEFAULT_HASHING_ALGORITHM (Django 3.1/3.2 only; 'sha1' writes the legacy format)
"""
import os

SECRET_KEY = os.environ['DJANGO_SECRET_KEY']
DEBUG = False
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
INSTALLED_APPS = ['django.contrib.sessions']
MIDDLEWARE = ['django.contrib.sessions.middleware.SessionMiddleware']
ROOT_URLCONF = 'legacy.urls'
WSGI_APPLICATION = 'legacy.wsgi.application'
USE_TZ = True
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'

SESSION_ENGINE = 'django.contrib.sessions.backends.' + os.environ.get('DJANGO_SESSION_ENGINE', 'db')
SESSION_FILE_PATH = os.environ.get('DJANGO_SESSION_FILE_PATH') or None

if os.environ.get('DJANGO_DB') == 'postgres':
    DATABASES = {
        'default': {
            'ENGINE': 'django.db.backends.postgresql',
            'NAME': 'test',
            'HOST': '127.0.0.1',
            'PORT': '5432',
            'USER': 'postgres',
            'OPTIONS': {'options': '-c search_path=' + os.environ['DJANGO_PG_SCHEMA']},
        }
    }
else:
    DATABASES = {
        'default': {
            'ENGINE': 'django.db.backends.sqlite3',
            'NAME': os.environ.get('DJANGO_SQLITE_PATH', ':memory:'),
        }
    }

if os.environ.get('DJANGO_HASHING'):
    DEFAULT_HASHING_ALGORITHM = os.environ['DJANGO_HASHING']
