"""``ccp.db.Columns``: rows read by plain SQL become the instances the ORM gives for them (``from_db``), also
when built without ``Model.__init__`` (the fast path); a model with an init signal's receiver is built by
``from_db``, so the receiver runs."""

import pytest
from django.db import connection
from django.db.models.signals import post_init

from ccp.accounts.models import Client, FundLock
from ccp.contracts.models import Contract
from ccp.db import Columns
from ccp.orders.models import Order
from tests.factories import FundLockFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db


def read(model, pk):
    columns = Columns.of(model)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns.select('t')} FROM {model._meta.db_table} AS t WHERE t.id = %s", [pk])
        return columns.instance(cursor.fetchone())


def same_instance(built, orm) -> None:
    assert type(built) is type(orm)
    assert {k: v for k, v in built.__dict__.items() if k != "_state"} == \
        {k: v for k, v in orm.__dict__.items() if k != "_state"}
    assert list(built.__dict__) == list(orm.__dict__)  # the same attributes, in the same order
    assert (built._state.adding, built._state.db, built._state.fields_cache) == (False, "default", {})
    assert (orm._state.adding, orm._state.db) == (False, "default")


def test_rows_become_the_orms_instances():
    order = ReceivedOrderFactory(attached={"tp": {"price": "1"}})
    lock = FundLockFactory()
    for model, pk in ((Order, order.pk), (Contract, order.contract_id), (Client, order.client_id),
                      (FundLock, lock.pk)):
        assert Columns.of(model).plain, model  # plain columns: built without Model.__init__
        same_instance(read(model, pk), model.objects.get(pk=pk))
    built = read(Order, order.pk)
    assert built.contract == order.contract  # the foreign key reads its row as the ORM's instance does
    built.client_id = order.client_id
    built.price += 1
    built.save(update_fields=["price"])
    assert Order.objects.get(pk=order.pk).price == order.price + 1


def test_an_init_receiver_sees_each_instance():
    order = ReceivedOrderFactory()
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(receiver, sender=Order)
    try:
        built = read(Order, order.pk)
    finally:
        post_init.disconnect(receiver, sender=Order)
    assert seen == [built]
    same_instance(built, Order.objects.get(pk=order.pk))


def test_a_new_instance_is_the_one_model_init_gives():
    order = ReceivedOrderFactory()
    values = [getattr(order, f.attname) for f in Order._meta.concrete_fields]
    values[0] = None  # not stored yet
    built, init = Columns.of(Order).new(values), Order(*values)
    assert {k: v for k, v in built.__dict__.items() if k != "_state"} == \
        {k: v for k, v in init.__dict__.items() if k != "_state"}
    assert list(built.__dict__) == list(init.__dict__)
    assert (built._state.adding, built._state.db) == (init._state.adding, init._state.db) == (True, None)
    built.client_order_id = "built-new"
    built.save()  # stored as a new row, as Order(...).save() does
    assert Order.objects.get(client_order_id="built-new").contract_id == order.contract_id



class _Noted:
    """A base class whose __init__ Model.__init__ reaches (its super().__init__())."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.noted = True



def test_a_model_whose_init_does_more_is_built_by_it():
    from django.apps import apps

    class NotedOrder(Order, _Noted):  # registered for this test only: no migration for it
        class Meta:
            proxy = True
            app_label = "orders"

    try:
        order = ReceivedOrderFactory()
        assert Columns.of(Order).plain and not Columns.of(NotedOrder).plain
        built = read(NotedOrder, order.pk)
        assert built.noted and built.client_order_id == order.client_order_id and not built._state.adding
    finally:
        del apps.all_models["orders"]["notedorder"]
        apps.clear_cache()


def test_no_model_is_left_registered():
    from django.apps import apps

    assert "notedorder" not in apps.all_models["orders"]
    assert all(model.__name__ != "NotedOrder" for model in apps.get_models())
