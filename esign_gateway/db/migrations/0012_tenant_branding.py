from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0011_download_links_event_notes')]

    initial = False

    operations = [
        ops.AddField(model_name='Tenant', name='display_name', field=fields.CharField(null=True, max_length=200)),
        ops.AddField(model_name='Tenant', name='logo', field=fields.BinaryField(null=True)),
        ops.AddField(model_name='Tenant', name='logo_type', field=fields.CharField(null=True, max_length=16)),
        ops.AddField(model_name='Tenant', name='logo_sha256', field=fields.CharField(null=True, max_length=64)),
        ops.AddField(model_name='Tenant', name='accent_color', field=fields.CharField(null=True, max_length=7)),
    ]
