from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

# The keys stored so far move to the new table. A web receipt ("w-" and 32 hex digits) marks an
# anonymous appeal's key, kept as it was sent (even one that began "order:"); "order:K" and
# "order-stage:K" were a staff caller's order keys, whose caller nobody recorded: they keep
# their operation and the key K under the caller "legacy", which no caller of today is, so a
# retry across the upgrade is done again, and an order upsert or a stage change done again
# changes nothing (the same external id, the same stage).
_RECEIPT = """(SUBSTR("external_id", 1, 2) = 'w-' AND LENGTH("external_id") = 34)"""
COPY_KEYS = f"""
INSERT INTO "idempotency_record" ("operation", "caller", "key", "fingerprint", "external_id",
                                  "created_at")
SELECT CASE WHEN {_RECEIPT} THEN 'appeal'
            WHEN SUBSTR("key", 1, 12) = 'order-stage:' THEN 'order-stage'
            WHEN SUBSTR("key", 1, 6) = 'order:' THEN 'order'
            ELSE 'appeal' END,
       CASE WHEN {_RECEIPT} THEN 'anonymous'
            WHEN SUBSTR("key", 1, 12) = 'order-stage:' OR SUBSTR("key", 1, 6) = 'order:'
            THEN 'legacy'
            ELSE 'anonymous' END,
       CASE WHEN {_RECEIPT} THEN "key"
            WHEN SUBSTR("key", 1, 12) = 'order-stage:' THEN SUBSTR("key", 13)
            WHEN SUBSTR("key", 1, 6) = 'order:' THEN SUBSTR("key", 7)
            ELSE "key" END,
       "fingerprint", "external_id", "created_at"
FROM "idempotency_key"
"""

class Migration(migrations.Migration):
    dependencies = [('models', '0011_token_expiry')]

    initial = False

    operations = [
        ops.CreateModel(
            name='IdempotencyRecord',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('operation', fields.CharField(max_length=32)),
                ('caller', fields.CharField(max_length=200)),
                ('key', fields.CharField(max_length=200)),
                ('fingerprint', fields.CharField(max_length=64)),
                ('external_id', fields.CharField(max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'idempotency_record', 'app': 'models', 'unique_together': (('operation', 'caller', 'key'),), 'pk_attr': 'id', 'table_description': 'An ``Idempotency-Key`` seen on a create request, with what it created. Keys are unique'},
            bases=['Model'],
        ),
        ops.RunSQL(COPY_KEYS),
        ops.DeleteModel(name='IdempotencyKey'),
    ]
