import pytest


@pytest.fixture(autouse=True)
def fresh_engines():
    """Each test starts with no continuous-book engine cached in this process."""
    from ccp.book import services

    services._BOOKS.clear()
    yield
    services._BOOKS.clear()
