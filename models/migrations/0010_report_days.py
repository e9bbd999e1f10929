from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0009_report_figures')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ReportDay',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('day', fields.DateField()),
                ('kind', fields.CharField(max_length=16)),
                ('key', fields.CharField(default='', max_length=64)),
                ('created', fields.IntField(default=0)),
                ('answered', fields.IntField(default=0)),
                ('answered_due', fields.IntField(default=0)),
                ('answered_met', fields.IntField(default=0)),
                ('done', fields.IntField(default=0)),
                ('done_due', fields.IntField(default=0)),
                ('done_met', fields.IntField(default=0)),
                ('reopened', fields.IntField(default=0)),
                ('zone', fields.CharField(default='', max_length=64)),
                ('figures', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('counted_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'report_day', 'app': 'models', 'unique_together': (('day', 'kind', 'key'),), 'pk_attr': 'id', 'table_description': "The figures of one finished day (in the company's time zone) for one line: ``all``"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ReportStale',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('day', fields.DateField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'report_stale', 'app': 'models', 'indexes': [Index(fields=['day'])], 'pk_attr': 'id', 'table_description': 'A finished day whose figures changed after it was counted (a reopening, a new owner or'},
            bases=['Model'],
        ),
    ]
