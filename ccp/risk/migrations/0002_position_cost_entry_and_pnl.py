import ccp.money
from decimal import Decimal
from django.db import migrations, models


# Positions booked before costs were kept: the cost of the open quantity is what its cash movements
# paid (the realised PnL so far is then zero: what an earlier partial close realised is not told
# apart), its entry price that cost per unit (a future's price adds its floor back). In the database.
BACKFILL = """
    WITH cost AS (
        SELECT p.id, p.quantity, c.kind, c.floor_px,
               -COALESCE((SELECT SUM(m.amount) FROM settlement_cashmovement m
                          WHERE m.client_id = p.client_id AND m.contract_id = p.contract_id), 0) AS cost
        FROM risk_position p JOIN contracts_contract c ON c.id = p.contract_id
        WHERE p.quantity <> 0
    )
    UPDATE risk_position p
    SET cost = e.cost, realised_pnl = 0,
        entry_price = round(e.cost / e.quantity, 18) + CASE WHEN e.kind = 'future' THEN e.floor_px ELSE 0 END
    FROM cost e WHERE p.id = e.id
"""


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
        ('contracts', '0001_initial'),
        ('risk', '0001_initial'),
        ('settlement', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='position',
            name='cost',
            field=ccp.money.MoneyField(decimal_places=18, default=Decimal('0'), help_text='premiums paid for the open quantity (negative: received)', max_digits=38),
        ),
        migrations.AddField(
            model_name='position',
            name='entry_price',
            field=ccp.money.MoneyField(blank=True, decimal_places=18, help_text='average price of the open quantity; none when flat', max_digits=38, null=True),
        ),
        migrations.AddField(
            model_name='position',
            name='realised_pnl',
            field=ccp.money.MoneyField(decimal_places=18, default=Decimal('0'), help_text="realised PnL - cost = the position's cash movements", max_digits=38),
        ),
        migrations.AddConstraint(
            model_name='position',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('quantity', 0), _negated=True), models.Q(('cost', 0), ('entry_price__isnull', True)), _connector='OR'), name='position_flat_has_no_entry'),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
