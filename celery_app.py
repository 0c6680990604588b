"""The Celery application: ``celery -A celery_app worker`` and ``celery -A celery_app beat``.

Configuration comes from Django settings (``CELERY_*``); tasks are found in each app's tasks.py.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")

app = Celery("ccp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
