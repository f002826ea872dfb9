from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0009_document_prepared')]

    initial = False

    operations = [
        ops.AddField(
            model_name='DocumentRow',
            name='placements',
            field=fields.JSONField(null=True),
        ),
    ]
