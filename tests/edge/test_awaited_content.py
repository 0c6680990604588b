"""An order's answer rendered from its result signal (``ccp.asgi.awaited_content``): the bytes the signal
carried are answered as they are only where that is byte for byte what rendering the decoded orders gives (the
answer before: DRF's JSON renderer of the orders as decoded), for a single order and a batch, whatever the
orders' text holds and however the answer was negotiated."""

import json

import pytest
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from ccp.asgi import _Sent, awaited_content
from ccp.orders.results import result_json
from ccp.orders.serializers import order_payload
from tests.factories import ReceivedOrderFactory

pytestmark = pytest.mark.django_db


def negotiated(media_type="application/json", context=None) -> Response:
    response = Response({})
    response.accepted_renderer, response.accepted_media_type = JSONRenderer(), media_type
    response.renderer_context = context or {}
    return response


def single(order_id):
    return lambda payloads: (payloads[order_id], 201)


def batch(order_ids):
    results = [{"status": 202, "order": {"id": order_id}} for order_id in order_ids]
    extra = {"n": 1, "none": None, "ok": True, "list": [1, "a", "q\"b\\s\x7f", 1.5]}
    results.insert(1, {"status": 400, "error": {"code": "unknown_contract", "message": "No contract \u2028 «é».",
                                                "extra": extra}})
    return lambda payloads: ({"results": [{"status": 201, "order": payloads[r["order"]["id"]]} if "order" in r else r
                                          for r in results]}, 200)


TEXTS = ["plain-1", "caf\u00e9", "line\u2028sep", "del\x7f", "back\\u0041slash", "tab\tquote\"", "\U0001f600"]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("negotiation", [("application/json", None), ("application/json; indent=2", None),
                                         ("application/json", {"indent": 4})])
def test_the_answer_is_what_rendering_the_decoded_orders_gives(text, negotiation):
    first = ReceivedOrderFactory(client_order_id="c0", attached={"note": text})
    orders = [first, *(ReceivedOrderFactory(client_order_id=f"c{n}", client=first.client, contract=first.contract,
                                            attached={"note": text}) for n in (1, 2))]
    sent = {order.pk: result_json(order_payload(order)).encode() for order in orders}
    for render in (single(orders[0].pk), batch([order.pk for order in orders])):
        response = negotiated(*negotiation)
        before = render({order_id: json.loads(value) for order_id, value in sent.items()})
        expected = response.accepted_renderer.render(before[0], response.accepted_media_type,
                                                     response.renderer_context)
        assert awaited_content(response, render, sent) == (expected, before[1])


def test_a_plain_orders_json_is_answered_as_sent(monkeypatch):
    """Nothing decoded nor encoded again for a plain order in a compact answer (the point of it)."""
    order = ReceivedOrderFactory(client_order_id="plain")
    sent = {order.pk: result_json(order_payload(order)).encode()}
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("decoded"))
    content, status = awaited_content(negotiated(), single(order.pk), sent)
    assert (content, status) == (sent[order.pk], 201) and type(content) is bytes and type(content) is not _Sent
