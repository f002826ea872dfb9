from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0007_archive_support')]

    initial = False

    operations = [
        ops.AddField(
            model_name='SignerRow',
            name='delivery_error',
            field=fields.CharField(null=True, max_length=500),
        ),
    ]
