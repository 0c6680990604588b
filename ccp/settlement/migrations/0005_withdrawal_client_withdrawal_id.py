from django.db import migrations, models
from django.db.models import F, Value
from django.db.models.functions import Concat


def backfill(apps, schema_editor):
    # Withdrawals made before clients sent ids get one of their own.
    withdrawal = apps.get_model("settlement", "Withdrawal")
    withdrawal.objects.update(client_withdrawal_id=Concat(Value("legacy-"), F("id"),
                                                          output_field=models.CharField()))


class Migration(migrations.Migration):
    dependencies = [("settlement", "0004_tracking_tx_hash_index")]

    operations = [
        migrations.AddField(model_name="withdrawal", name="client_withdrawal_id",
                            field=models.CharField(default="", max_length=64,
                                                   help_text="the client's idempotency key"),
                            preserve_default=False),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AddConstraint(model_name="withdrawal", constraint=models.UniqueConstraint(
            fields=("client", "client_withdrawal_id"), name="withdrawal_unique_client_withdrawal_id")),
    ]
