"""Every setting of the system, typed, read from the environment and `.env`.

Defaults are embedded and local: no `DATABASE_URL` means an embedded PostgreSQL under
`LUNG_HOME`, no `MLFLOW_TRACKING_URI` means a SQLite-backed MLflow store (with a model
registry) under `LUNG_HOME`. The README's settings table lists every field below.
See https://docs.pydantic.dev/latest/concepts/pydantic_settings/
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLASSES: tuple[str, ...] = ("normal", "benign", "malignant")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LUNG_",
        env_file=PROJECT_ROOT / ".env",
        extra="ignore",
        populate_by_name=True,
    )

    # Where things live
    home: Path = Field(PROJECT_ROOT / "var", description="Runtime state: inbox, archive, stores")
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "LUNG_DATABASE_URL"),
        description="PostgreSQL URL; unset starts (or reuses) an embedded server under LUNG_HOME",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "LUNG_MLFLOW_TRACKING_URI"),
        description="MLflow tracking/registry URI; unset uses SQLite under LUNG_HOME/mlflow",
    )
    dvc_remote: str | None = Field(
        None, description="DVC remote URL or path; unset uses LUNG_HOME/dvc-remote"
    )
    dataset_source: Path | None = Field(
        None, description="Where `make data` imports the raw dataset from"
    )
    model_name: str = Field("lung-ct-classifier", description="Registered MLflow model name")
    experiment: str = Field("lung-ct", description="MLflow experiment of the training runs")

    # Inbox protocol
    ready_marker: str = Field("_READY", description="File that marks a study folder ready")
    ready_quiet_seconds: float = Field(
        0.0, description="Also wait until a ready folder is unchanged this long (0: off)"
    )
    pseudonymise_names: bool = Field(
        False,
        description="Store a site-keyed pseudonym instead of study folder and file names "
        "(the archive and quarantine on disk keep the real names)",
    )

    # Hospital integration: the DICOM receiver (`receive`) and results out (`send-results`)
    dicom_ae_title: str = Field(
        "LUNGAI", description="AE title of the DICOM receiver and of the results it sends"
    )
    dicom_port: int = Field(11112, description="Port the DICOM receiver listens on")
    dicom_bind_host: str = Field("127.0.0.1", description="Address the DICOM receiver listens on")
    dicom_allowed_aets: str = Field(
        "ORTHANC", description="Calling AE titles the receiver accepts, comma-separated ('*': any)"
    )
    dicom_quiet_seconds: float = Field(
        10.0, description="A received study is marked ready once no instance came for this long"
    )
    results_dicom_destination: str | None = Field(
        None, description="C-STORE result SRs to AET@host:port (unset: no C-STORE)"
    )
    results_dicomweb_url: str | None = Field(
        None, description="STOW-RS result SRs to this DICOMweb root (unset: no STOW-RS)"
    )
    results_fhir_url: str | None = Field(
        None,
        description="PUT FHIR DiagnosticReports (by id) to this FHIR base (unset: outbox only)",
    )
    results_retry_seconds: float = Field(
        30.0, description="First wait before a failed delivery is retried (doubles each time)"
    )
    results_retry_max_seconds: float = Field(
        3600.0, description="Longest wait between retries of a failed delivery"
    )

    # Promotion gate floors and tolerance (applied on the fixed test split)
    gate_min_malignant_recall: float = Field(0.95, description="Floor: malignant slices found")
    gate_min_study_malignant_recall: float = Field(
        1.0, description="Floor: malignant studies found"
    )
    gate_max_normal_as_malignant: float = Field(
        0.15, description="Ceiling: share of normal slices called malignant"
    )
    gate_max_study_normal_as_malignant: float = Field(
        0.20, description="Ceiling: share of normal studies called malignant"
    )
    gate_min_macro_f1: float = Field(0.55, description="Floor: macro-F1 over the 3 classes")
    gate_max_ece: float = Field(0.10, description="Ceiling on expected calibration error")
    gate_tolerance: float = Field(
        0.01, description="How much worse than the champion a challenger may be"
    )
    gate_max_invariance_calls_changed: float = Field(
        0.05, description="Ceiling: share of slice calls another acquisition changes (worst)"
    )
    gate_max_invariance_normal_as_malignant: float = Field(
        0.15, description="Ceiling: normal slices called malignant under another acquisition"
    )

    # Serving
    malignant_threshold: float | None = Field(
        None,
        description="A slice makes its study malignant at this probability (unset: the "
        "threshold fitted with the model, else 0.5)",
    )
    uncertain_margin: float = Field(
        0.6, description="Flag a study for review when its top probability is below this"
    )
    guard_min_share: float = Field(
        0.5,
        description="Mark a study unlike the scans its model learned from when at least this "
        "share of its slices lies outside the model's acquisition range on one measurement",
    )
    guard_slices: int = Field(
        12,
        description="Slices of each study, spread evenly through it, whose acquisition the "
        "guard measures (0: none, the guard off)",
    )
    guard_perturbations: str = Field(
        "narrower_window,smaller_matrix",
        description="Acquisition changes (names of lung_model.imaging.acquisition.PERTURBATIONS, "
        "comma-separated) under which the guard's slices are scored again: the study's "
        "acquisition sensitivity ('': not scored again)",
    )
    score_batch_size: int = Field(64, description="Slices per prediction and DB transaction")
    score_workers: int = Field(
        0,
        description="Threads (or worker processes) decoding slices while the model predicts "
        "(0: 60% of the CPUs rounded up, 1 to 4)",
    )
    score_processes_min_files: int = Field(
        32,
        description="Studies of at least this many files are decoded in worker processes when "
        "the model's preparation holds Python's GIL (the feature model; 0: always threads)",
    )
    score_model_threads: int = Field(
        0,
        description="TensorFlow threads of the scorer's forward pass (0: the CPUs the decoding "
        "threads leave, plus one)",
    )
    score_tasks: int = Field(
        2,
        description="Scoring tasks of a lung_batch_score run, run at once; each loads the model "
        "once and takes the ready studies one at a time: match the CPUs or worker slots",
        ge=1,
    )

    # Hosts and ports of the local services
    bind_host: str = Field("127.0.0.1", description="Address the local services listen on")

    # Review dashboard
    dashboard_database_url: str | None = Field(
        None, description="Login of the dashboard's restricted role; unset: generated at setup"
    )
    dashboard_auth_provider: str | None = Field(
        None, description="st.login OIDC provider ('default' or a name); unset: local accounts"
    )
    mlflow_ui_url: str = Field(
        "http://127.0.0.1:5000", description="MLflow UI the dashboard links runs to"
    )

    # Orchestration (Airflow, `make demo`) and monitoring
    airflow_url: str = Field(
        "http://127.0.0.1:8080", description="Airflow API server / UI (`make demo` listens here)"
    )
    dashboard_url: str = Field(
        "http://127.0.0.1:8501", description="Review dashboard (`make demo` listens here)"
    )
    alert_webhook: str | None = Field(
        None, description="POST monitoring alerts as JSON here; unset: log only"
    )
    monitor_max_psi: float = Field(
        0.25, description="Alert when predicted classes drift from training beyond this PSI"
    )
    monitor_max_backlog: int = Field(50, description="Alert when more studies await review")
    monitor_max_unlike_training: float = Field(
        0.2,
        description="Alert when more than this share of the studies a guarded model scored "
        "were unlike the scans it learned from",
    )

    # Backups (`python -m lung_model backup`, the daily `lung_backup` DAG)
    backup_dir: Path | None = Field(
        None,
        description="Where backups go (unset: LUNG_HOME's sibling <name>-backups, which `make "
        "clean` keeps; best on another disk)",
    )
    backup_keep: int = Field(7, ge=1, description="Dated backups the daily backup keeps")

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def processing(self) -> Path:
        return self.home / "processing"

    @property
    def archive(self) -> Path:
        return self.home / "archive"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def raw_data(self) -> Path:
        return PROJECT_ROOT / "data" / "raw"

    @property
    def dvc_remote_url(self) -> str:
        return self.dvc_remote or str(self.home / "dvc-remote")

    @property
    def backup_folder(self) -> Path:
        return self.backup_dir or self.home.with_name(f"{self.home.name}-backups")

    @property
    def default_dataset_source(self) -> Path:
        return self.dataset_source or PROJECT_ROOT.parent / "shared" / "datasets" / "iq-othnccd"

    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        store = self.home / "mlflow"
        store.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{store / 'mlflow.db'}"

    def artifact_root(self) -> str:
        return str(self.home / "mlflow" / "artifacts")

    def ensure_dirs(self) -> None:
        for folder in (self.inbox, self.processing, self.archive, self.quarantine):
            folder.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
