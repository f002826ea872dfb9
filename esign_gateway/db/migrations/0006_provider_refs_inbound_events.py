from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_plans_usage_idempotency')]

    initial = False

    operations = [
        ops.CreateModel(
            name='InboundEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('provider', fields.CharField(max_length=32)),
                ('event_id', fields.CharField(max_length=128)),
                ('event_type', fields.CharField(max_length=64)),
                ('envelope_ref', fields.CharField(max_length=128)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'inbound_event', 'app': 'models', 'unique_together': (('provider', 'event_id'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AlterField(
            model_name='EnvelopeRow',
            name='provider_ref',
            field=fields.CharField(null=True, db_index=True, max_length=128),
        ),
        ops.AddField(
            model_name='SignerRow',
            name='provider_ref',
            field=fields.CharField(null=True, max_length=128),
        ),
    ]
