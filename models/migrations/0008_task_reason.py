from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0007_customer_lifecycle')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Task',
            name='reason',
            field=fields.CharField(default='', max_length=500),
        ),
        ops.AddIndex(
            model_name='Task',
            index=Index(fields=['kind', 'completed_at']),
        ),
    ]
