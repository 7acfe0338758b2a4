-- Distribute facegate's tables on a Citus coordinator (see docs/POSTGRES.md).
-- Run once, after facegate has created its tables (any facegate command against the database).
SELECT create_reference_table('facegate_meta');
SELECT create_reference_table('facegate_schema_migrations');
SELECT create_reference_table('facegate_api_keys');
SELECT create_distributed_table('facegate_people', 'name');
SELECT create_distributed_table('facegate_templates', 'person', colocate_with => 'facegate_people');
