from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0006_provider_refs_inbound_events')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SupportAccess',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key_id', fields.CharField(max_length=36)),
                ('envelope_id', fields.CharField(db_index=True, max_length=36)),
                ('tenant_id', fields.CharField(null=True, max_length=36)),
                ('action', fields.CharField(max_length=16)),
                ('reason', fields.CharField(max_length=500)),
                ('ip', fields.CharField(null=True, max_length=64)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'support_access', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='EnvelopeRow',
            name='audit_report_sha256',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='EnvelopeRow',
            name='purged_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Tenant',
            name='contact_email',
            field=fields.CharField(null=True, max_length=320),
        ),
    ]
