from django.db import models


class BookVersion(models.Model):
    """A continuous contract's book version: bumped by each matcher batch and by every change of the
    contract's orders made outside its matcher (a cancel, a size decrease, a halt, a trading-mode change).
    A matcher whose engine was built at another version rebuilds it from the database
    (``ccp.book.services``)."""

    contract = models.OneToOneField("contracts.Contract", on_delete=models.PROTECT, primary_key=True,
                                    related_name="+")
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"book of contract {self.contract_id}: version {self.version}"
