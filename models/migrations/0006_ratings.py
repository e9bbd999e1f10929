from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0005_sla_state')]

    initial = False

    operations = [
        ops.CreateModel(
            name='RatingRequest',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('appeal', fields.ForeignKeyField('models.Appeal', source_field='appeal_id', null=True, db_constraint=True, to_field='id', related_name='rating_requests', on_delete=OnDelete.CASCADE)),
                ('order', fields.ForeignKeyField('models.Order', source_field='order_id', null=True, db_constraint=True, to_field='id', related_name='rating_requests', on_delete=OnDelete.CASCADE)),
                ('customer', fields.ForeignKeyField('models.Customer', source_field='customer_id', db_constraint=True, to_field='id', related_name='rating_requests', on_delete=OnDelete.CASCADE)),
                ('channel', fields.CharField(default='', max_length=16)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('answered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('comment_channel', fields.CharField(null=True, max_length=16)),
                ('comment_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('comment_ref', fields.CharField(null=True, unique=True, max_length=240)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'rating_request', 'app': 'models', 'indexes': [Index(fields=['appeal_id', 'id']), Index(fields=['customer_id', 'comment_until']), Index(fields=['created_at'])], 'pk_attr': 'id', 'table_description': 'One «how did it go?» sent to a customer about an appeal or an order (seed 004): valid'},
            bases=['Model'],
        ),
        ops.AlterModelOptions(
            name='Rating',
            options={'table': 'rating', 'app': 'models', 'unique_together': (('appeal_id', 'day'), ('order_id', 'day')), 'indexes': [Index(fields=['day']), Index(fields=['agent_id', 'day'])], 'pk_attr': 'id', 'table_description': "A customer's score 1–5 for an appeal or an order, one per day (the last one wins); the"},
        ),
        ops.AlterField(
            model_name='Rating',
            name='appeal',
            field=fields.ForeignKeyField('models.Appeal', source_field='appeal_id', null=True, db_constraint=True, to_field='id', related_name='ratings', on_delete=OnDelete.CASCADE),
        ),
        ops.AddField(
            model_name='Rating',
            name='agent_id',
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name='Rating',
            name='category',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='Rating',
            name='channel',
            field=fields.CharField(default='', max_length=16),
        ),
        ops.AddField(
            model_name='Rating',
            name='order',
            field=fields.ForeignKeyField('models.Order', source_field='order_id', null=True, db_constraint=True, to_field='id', related_name='ratings', on_delete=OnDelete.CASCADE),
        ),
        ops.AddField(
            model_name='Rating',
            name='request',
            field=fields.ForeignKeyField('models.RatingRequest', source_field='request_id', null=True, db_constraint=True, to_field='id', related_name='ratings', on_delete=OnDelete.SET_NULL),
        ),
        ops.AddField(
            model_name='Rating',
            name='team',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='Rating',
            name='via',
            field=fields.CharField(default='', max_length=16),
        ),
        ops.AddIndex(
            model_name='Rating',
            index=Index(fields=['agent_id', 'day']),
        ),
        ops.AddConstraint(
            model_name='Rating',
            constraint=UniqueConstraint(fields=('order_id', 'day'), name=None),
        ),
        ops.AddField(
            model_name='Task',
            name='due_raised_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
