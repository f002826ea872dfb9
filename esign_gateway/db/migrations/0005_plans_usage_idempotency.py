from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0004_webhooks')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ApiUsage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant_id', fields.CharField(max_length=36)),
                ('day', fields.CharField(max_length=10)),
                ('count', fields.IntField(default=0)),
            ],
            options={'table': 'api_usage', 'app': 'models', 'unique_together': (('tenant_id', 'day'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='IdempotencyKey',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=36)),
                ('tenant_id', fields.CharField(max_length=36)),
                ('key', fields.CharField(max_length=255)),
                ('fingerprint', fields.CharField(max_length=64)),
                ('status', fields.CharField(max_length=12)),
                ('owner', fields.CharField(max_length=32)),
                ('lease_until', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('envelope_id', fields.CharField(null=True, max_length=36)),
                ('response_status', fields.IntField(null=True)),
                ('response_body', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'idempotency_key', 'app': 'models', 'unique_together': (('tenant_id', 'key'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PlanChange',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant_id', fields.CharField(max_length=36)),
                ('code', fields.CharField(max_length=32)),
                ('documents', fields.IntField()),
                ('fee', fields.DecimalField(max_digits=12, decimal_places=2)),
                ('daily_requests', fields.IntField()),
                ('enabled', fields.BooleanField()),
                ('effective_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('actor', fields.CharField(max_length=16)),
            ],
            options={'table': 'plan_change', 'app': 'models', 'indexes': [Index(fields=['tenant_id', 'effective_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UsageCounter',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant_id', fields.CharField(max_length=36)),
                ('month', fields.CharField(max_length=7)),
                ('used', fields.IntField(default=0)),
            ],
            options={'table': 'usage_counter', 'app': 'models', 'unique_together': (('tenant_id', 'month'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UsageRecord',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant_id', fields.CharField(max_length=36)),
                ('envelope_id', fields.CharField(max_length=36)),
                ('document_id', fields.CharField(unique=True, max_length=36)),
                ('month', fields.CharField(max_length=7)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'usage_record', 'app': 'models', 'indexes': [Index(fields=['tenant_id', 'month'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        # Tenants created before plans existed held the free plan from their creation (on or off as
        # their old signing switch said); the tenant's plan now lives only in plan_change.
        ops.RunSQL(
            "INSERT INTO plan_change (tenant_id, code, documents, fee, daily_requests, enabled, effective_at,"
            " created_at, actor) SELECT id, 'free', 4, 0, 1000, signing_enabled, created_at, created_at, 'system'"
            " FROM tenant"
        ),
        ops.RemoveField(model_name='Tenant', name='plan_code'),
        ops.RemoveField(model_name='Tenant', name='signing_enabled'),
    ]
