from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_reminders')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='DocumentRow',
            index=Index(fields=['envelope_id', 'position']),
        ),
        ops.AddIndex(
            model_name='EnvelopeRow',
            index=Index(fields=['tenant_id', 'id']),
        ),
        ops.AddIndex(
            model_name='SignerRow',
            index=Index(fields=['envelope_id', 'position']),
        ),
    ]
