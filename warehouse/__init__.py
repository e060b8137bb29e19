"""The hourly BigQuery load of the lake, and its hourly aggregate: plain functions
that `hoststream warehouse` and the Airflow DAG (dags/) call."""
