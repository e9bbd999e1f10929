from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Appeal',
            name='staff_state',
            field=fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='Appeal',
            name='waiting_since',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Appeal',
            index=Index(fields=['status', 'waiting_since']),
        ),
        ops.AddField(
            model_name='Message',
            name='edited_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Message',
            name='source_ref',
            field=fields.CharField(null=True, unique=True, max_length=200),
        ),
        ops.AddIndex(
            model_name='OutboxItem',
            index=Index(fields=['channel', 'address', 'external_id']),
        ),
    ]
