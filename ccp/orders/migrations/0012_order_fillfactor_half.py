from django.db import migrations


class Migration(migrations.Migration):
    """Orders' pages keep half their room free (was a fifth): an auction's apply writes the reason of every
    order it leaves open (tens of thousands of rows on a fresh book: ``unfilled_reason``), and with a fifth free
    most of those updates found no room on their page, moved to another and wrote each of the order's index
    entries again; with half free they stay on their page (HOT: no index writes). At 100,000 orders with 30% of
    clients bound, that statement's PostgreSQL CPU went from 1.2-1.4 s to 0.4 s (BENCHMARKS.md). Pages written
    before keep their layout until the table is rewritten (``VACUUM FULL orders_order``)."""

    dependencies = [
        ('orders', '0011_order_fewer_indexes'),
    ]

    operations = [
        migrations.RunSQL("ALTER TABLE orders_order SET (fillfactor = 50)",
                          "ALTER TABLE orders_order SET (fillfactor = 80)"),
    ]
