"""risk_position.written_xid: the transaction that last wrote the row, set by a trigger on every INSERT and
UPDATE, and its index (contract_id, written_xid): ccp.perps.live syncs its in-memory index from the rows written
since its last sync. A column of the table only, not a model field (ccp.risk.models.Position says why)."""

from django.db import migrations

FORWARD = """
ALTER TABLE risk_position ADD COLUMN written_xid bigint;
CREATE FUNCTION risk_position_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.written_xid := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;
CREATE TRIGGER risk_position_written BEFORE INSERT OR UPDATE ON risk_position
    FOR EACH ROW EXECUTE FUNCTION risk_position_written();
UPDATE risk_position SET written_xid = pg_current_xact_id()::text::bigint;
CREATE INDEX position_written ON risk_position (contract_id, written_xid);
"""

BACKWARD = """
DROP INDEX position_written;
DROP TRIGGER risk_position_written ON risk_position;
DROP FUNCTION risk_position_written();
ALTER TABLE risk_position DROP COLUMN written_xid;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('risk', '0006_position_cross_holders'),
    ]

    operations = [
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
