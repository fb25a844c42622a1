# One image for every service of docker-compose.yaml: Airflow (api-server, scheduler,
# dag-processor, triggerer, Celery worker), the MLflow server and the review dashboard.
# Dependencies come from requirements.lock, exactly as `make setup` installs them.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    LUNG_HOME=/var/lung

# git: DVC and the public-release fallback of `python -m lung_model data`;
# libgomp1: TensorFlow's CPU kernels; tini: reaps Airflow's and Celery's child processes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git libgomp1 tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 50000 --gid 0 lung \
    && mkdir -p /app /opt/airflow /var/lung \
    && chown -R lung:0 /app /opt/airflow /var/lung

WORKDIR /app
COPY --chown=lung:0 requirements.lock pyproject.toml README.md ./
RUN pip install -r requirements.lock

COPY --chown=lung:0 lung_model ./lung_model
RUN pip install --no-deps -e .
COPY --chown=lung:0 sql ./sql
COPY --chown=lung:0 dags ./dags
COPY --chown=lung:0 plugins ./plugins
COPY --chown=lung:0 dashboards ./dashboards
# read from the working directory of `streamlit run` (/app): no developer chrome
COPY --chown=lung:0 .streamlit/config.toml ./.streamlit/config.toml
COPY --chown=lung:0 deploy ./deploy
COPY --chown=lung:0 .dvc/config .dvc/.gitignore ./.dvc/
COPY --chown=lung:0 data/raw.dvc ./data/raw.dvc

USER lung
# No git checkout inside the image: DVC runs without an SCM here.
RUN python -m dvc config --local core.no_scm true

EXPOSE 8080 5000 8501
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "lung_model", "--help"]
