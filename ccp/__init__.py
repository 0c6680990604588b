# Load the Celery app with Django, so shared tasks bind to it (not to Celery's default app).
from celery_app import app as celery_app

__all__ = ["celery_app"]
