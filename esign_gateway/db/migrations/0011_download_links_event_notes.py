from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0010_document_placements')]

    initial = False

    operations = [
        ops.CreateModel(
            name='DownloadLink',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('envelope_id', fields.CharField(max_length=36)),
                ('recipient_id', fields.CharField(max_length=36)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('token_sealed', fields.TextField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'download_link', 'app': 'models',
                     'unique_together': (('envelope_id', 'recipient_id'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='AuditEvent',
            name='note',
            field=fields.CharField(null=True, max_length=500),
        ),
    ]
