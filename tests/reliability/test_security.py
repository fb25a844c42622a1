"""Security that can be checked without a browser: no secret in the repository, every place
a secret is generated into is git-ignored, and DICOM patient names and IDs never reach the
database in clear (every text column of every table is searched after scoring them)."""

from __future__ import annotations

import re
import subprocess

from psycopg2 import sql
from reliability_helpers import ct_slice
from scoring_toys import ToyPredictor
from sqlalchemy import Engine

from lung_model.pipelines.batch_score import claim_ready, score_study
from lung_model.settings import PROJECT_ROOT, Settings

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "password in a URL": re.compile(r"://[^/\s:@$]+:(?!\$\{)[^@\s/]{3,}@"),
    "secret assigned a literal": re.compile(  # the name ends in the word: not PASSWORD_FILE
        r"(?i)\b\w*(password|passwd|secret|token|api_?key)\s*[:=]\s*[\"'][^\"'\s]{8,}[\"']"
    ),
}
# Reviewed findings that are not secrets: (file, the text found); say why.
NOT_SECRETS = {
    ("tests/platform/test_airflow.py", "://u:" + "p%40ss@"),  # made up, to test quoting
    ("tests/platform/test_backup_tools.py", "://ann:" + "p%40ss@"),  # made up: kept off argv
}
WHERE_SECRETS_ARE_GENERATED = [
    ".env",  # python -m lung_model compose-env
    "var/secrets/airflow.json",  # LUNG_HOME/secrets: Airflow keys, admin password
    "var/secrets/dashboard-db-password",
    "var/secrets/patient-id.key",
    ".streamlit/secrets.toml",  # the dashboard's OIDC client secret
    ".dvc/config.local",  # a DVC remote's credentials
]


def _tracked_text_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout
    return [name for name in listed.decode().split("\0") if name]


def test_no_secret_is_committed() -> None:
    found = []
    for name in _tracked_text_files():
        path = PROJECT_ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        for what, pattern in SECRET_PATTERNS.items():
            for match in pattern.finditer(text):
                if (name, match.group(0)) not in NOT_SECRETS:
                    found.append(f"{name}: {what}: {match.group(0)[:12]}...")
    assert found == []


def test_every_place_secrets_are_generated_into_is_git_ignored() -> None:
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", *WHERE_SECRETS_ARE_GENERATED],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert sorted(checked.stdout.split()) == sorted(WHERE_SECRETS_ARE_GENERATED)
    docker_ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".env", "var", ".streamlit/secrets.toml"} <= set(docker_ignored)  # not in the image


def test_dicom_patient_names_and_ids_never_reach_the_database(
    settings: Settings, engine: Engine
) -> None:
    name, patient_id = "Reliabilitydoe^Janedoe", "MRN-77345-RELY"
    study = settings.inbox / "S-dicom-phi"
    study.mkdir()
    for number in (1, 2):
        (study / f"IM{number}.dcm").write_bytes(
            ct_slice(
                PatientName=name,
                PatientID=patient_id,
                OtherPatientIDs="ALT-99812-RELY",
                PatientBirthDate="19510203",
                InstanceNumber=number,
                ImagePositionPatient=[0, 0, number],
            )
        )
    (study / "_READY").touch()

    [summary] = [
        score_study(c, ToyPredictor("phi"), settings, engine) for c in claim_ready(settings, engine)
    ]

    assert (summary["status"], summary["n_scored"]) == ("done", 2)
    needles = ["Reliabilitydoe", "Janedoe", "77345", "99812", "19510203"]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            " AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb',"
            " 'bytea', 'ARRAY', 'USER-DEFINED')"
        )
        columns = cursor.fetchall()
        leaks = []
        for schema, table, column in columns:
            for needle in needles:
                cursor.execute(
                    sql.SQL("SELECT count(*) FROM {}.{} WHERE {}::text ILIKE %s").format(
                        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column)
                    ),
                    (f"%{needle}%",),
                )
                if cursor.fetchone()[0]:
                    leaks.append(f"{table}.{column} holds {needle}")
        cursor.execute(
            "SELECT i.patient_hash, i.instance_number FROM images i JOIN scan_batches b"
            " ON b.id = i.batch_id WHERE b.study = 'S-dicom-phi' ORDER BY i.instance_number"
        )
        hashes = cursor.fetchall()
    finally:
        raw.close()
    assert len(columns) > 20 and leaks == []
    assert [n for _, n in hashes] == [1, 2] and len({h for h, _ in hashes}) == 1
    assert len(hashes[0][0]) == 64  # a keyed hash links the slices of one patient, no more
