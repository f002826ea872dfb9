from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0008_signer_delivery_error')]

    initial = False

    operations = [
        ops.AddField(
            model_name='DocumentRow',
            name='prepared_sha256',
            field=fields.CharField(null=True, max_length=64),
        ),
    ]
