from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0003_stored_files')]

    initial = False

    operations = [
        ops.CreateModel(
            name='LabelledExample',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('text', fields.TextField(unique=False)),
                ('category', fields.CharField(max_length=64)),
                ('source', fields.CharField(default='agent', max_length=32)),
                ('appeal', fields.ForeignKeyField('models.Appeal', source_field='appeal_id', null=True, db_constraint=True, to_field='id', related_name='examples', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'labelled_example', 'app': 'models', 'indexes': [Index(fields=['category'])], 'pk_attr': 'id', 'table_description': "A text with the category a person gave it: what the router's model learns from."},
            bases=['Model'],
        ),
    ]
