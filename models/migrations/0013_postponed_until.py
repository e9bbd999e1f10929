from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0012_idempotency_per_caller')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Appeal',
            name='postponed_until',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Appeal',
            index=Index(fields=['status', 'postponed_until']),
        ),
    ]
