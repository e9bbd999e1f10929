from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0012_idempotency_per_caller')]

    initial = False

    operations = [
        ops.AddField(
            model_name='OutboxItem',
            name='receipt',
            field=fields.CharField(null=True, max_length=16),
        ),
    ]
