import sys

# py_ecc (imported by eth_account) raises Python's recursion limit to 100,000 when it is imported.
# With that limit a deeply nested input (a JSON text of 100,000 brackets) overflows the C stack in
# json's parser and kills the whole process with SIGSEGV instead of raising RecursionError. Import
# it once here, before anything parses input, and put the limit back to Python's default.
import py_ecc  # noqa: E402,F401

RECURSION_LIMIT = 1000
sys.setrecursionlimit(RECURSION_LIMIT)

# Load the Celery app with Django, so shared tasks bind to it (not to Celery's default app).
from celery_app import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
