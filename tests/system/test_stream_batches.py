import pytest
from django.db import transaction

from ccp.streams import stream_publish

pytestmark = pytest.mark.django_db


def test_one_transaction_publishes_its_events_in_one_batch(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as hooks:
        with transaction.atomic():
            for n in range(50):
                stream_publish("book.1", {"type": "test", "n": n})
    assert len(hooks) == 1


def test_a_rolled_back_savepoint_starts_a_new_batch(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as hooks:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    stream_publish("book.1", {"type": "undone"})
                    raise RuntimeError
            except RuntimeError:
                pass
            stream_publish("book.1", {"type": "kept"})
    assert len(hooks) == 1
    assert [m[1]["event"]["type"] for m in hooks[0].__self__.messages] == ["kept"]
