-- Run once by the postgres image on an empty volume: the databases next to `lung` (results).
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
