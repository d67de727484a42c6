-- One PostgreSQL server, one database per store: Dagster's (created by POSTGRES_DB), the Iceberg catalog's
-- and MLflow's.
CREATE DATABASE iceberg;
CREATE DATABASE mlflow;
