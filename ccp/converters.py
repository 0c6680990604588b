"""Path converters shared by the HTTP routes and the WebSocket routes."""

from django.urls import register_converter


class SymbolConverter:
    """A contract symbol (BTC-USDC-20261225-100000-C): letters, digits, '.' and '-'. Anything else in
    the path (a NUL byte, a slash, a space) matches no route: a 404, or close code 4404 on a stream."""

    regex = r"[A-Za-z0-9][A-Za-z0-9.\-]{0,63}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(SymbolConverter, "symbol")
