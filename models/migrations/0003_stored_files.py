from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_telegram_staff')]

    initial = False

    operations = [
        ops.CreateModel(
            name='StoredFile',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('sha256', fields.CharField(unique=True, max_length=64)),
                ('name', fields.CharField(default='', max_length=255)),
                ('mime', fields.CharField(default='application/octet-stream', max_length=127)),
                ('size', fields.BigIntField(default=0)),
                ('content', fields.BinaryField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'stored_file', 'app': 'models', 'pk_attr': 'id', 'table_description': "One file's bytes, kept once per content (deduplicated by SHA-256)."},
            bases=['Model'],
        ),
    ]
