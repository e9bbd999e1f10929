from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_ratings')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Customer',
            name='lost_after',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Customer',
            index=Index(fields=['lifecycle', 'lost_after']),
        ),
        ops.AddField(
            model_name='Order',
            name='amount',
            field=fields.DecimalField(null=True, max_digits=14, decimal_places=2),
        ),
        ops.AddField(
            model_name='Order',
            name='placed_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Order',
            index=Index(fields=['customer_id', 'placed_at']),
        ),
        ops.AddIndex(
            model_name='Task',
            index=Index(fields=['customer_id', 'kind', 'created_at']),
        ),
    ]
