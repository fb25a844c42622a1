#!/usr/bin/env bash
# One-shot setup of a compose deployment (the `airflow-init` service): results schema,
# Airflow metadata, the `dvc` pool, the admin login, and the labelled data in the DVC remote.
set -euo pipefail
mkdir -p "$LUNG_HOME"/{inbox,processing,archive,quarantine,secrets} "$LUNG_HOME/dvc-remote"
python -m lung_model migrate
airflow db migrate
airflow pools set dvc 1 "DVC runs one at a time per checkout"
# The simple auth manager reads its users' passwords from this file.
umask 077
printf '{"admin": "%s"}\n' "$AIRFLOW_ADMIN_PASSWORD" > "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
python -m lung_model data
echo "airflow-init: done"
