from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0008_task_reason')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PhraseDay',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('day', fields.DateField()),
                ('category', fields.CharField(default='', max_length=64)),
                ('phrase', fields.CharField(max_length=200)),
                ('shown', fields.CharField(default='', max_length=200)),
                ('appeals', fields.IntField()),
            ],
            options={'table': 'phrase_day', 'app': 'models', 'unique_together': (('day', 'category', 'phrase'),), 'pk_attr': 'id', 'table_description': 'How many appeals of one day and category used a phrase (word lemmas), counted once the'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Appeal',
            name='done_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Appeal',
            name='first_response_s',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Appeal',
            name='first_response_work_s',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Appeal',
            name='reopens',
            field=fields.SmallIntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='Appeal',
            name='resolution_s',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Appeal',
            name='resolution_work_s',
            field=fields.IntField(null=True),
        ),
        ops.AddIndex(
            model_name='Appeal',
            index=Index(fields=['created_at', 'channel', 'category', 'team', 'assignee_id']),
        ),
        ops.AddIndex(
            model_name='Appeal',
            index=Index(fields=['first_response_at', 'first_response_s', 'first_response_work_s', 'first_response_due', 'reopens']),
        ),
        ops.AddIndex(
            model_name='Appeal',
            index=Index(fields=['done_at', 'resolution_s', 'resolution_work_s', 'resolution_due', 'reopens']),
        ),
    ]
