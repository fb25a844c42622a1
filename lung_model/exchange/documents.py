"""A study report as the hospital reads it: a DICOM Comprehensive 3D SR rooted in TID 1500
(highdicom) for the PACS and viewers, a FHIR R5 DiagnosticReport (fhir.resources) for the EHR.

The SR joins the scanned study (same Study Instance UID and patient, a new series) with one
measurement group: the algorithm (the model's registered name and version, the study rule and
data version as its parameters), finding site lung, the mean probability of each class over
the study's slices and the highest slice probability of malignancy, the verdict as a
qualitative evaluation, each caution of the result (`reports.Caution`: the safety gate not
passed, unlike training, export-sensitive, uncertain) as one more under "Caution", and the
slices that drove the call as its source images; the series description says "not for
clinical use" when the model never passed the gate, as PACS lists show it. A
preliminary report is complete and unverified; the amended one after a review is final,
verified by the reviewer, names the preliminary one as its predecessor, and its verdict is
the reviewer's label. The DiagnosticReport says the same, its conclusion ending with the
cautions in words: status `preliminary` or `final`, one Observation per class (contained),
the algorithm as a contained Device, the ImagingStudy by its Study Instance UID.

Identifiers are derived from the study and report version (`uids`), so the same report
version always yields the same objects: resending one replaces it, never adds a second.
Codes without a standard one are in the private scheme `99LUNGAI` (see the README).
See https://highdicom.readthedocs.io/en/latest/tid1500.html and
https://build.fhir.org/ig/HL7/dicom-sr/ (DICOM SR to FHIR)
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from lung_model.exchange.reports import GATE_NOT_PASSED, Evidence, StudyReport
from lung_model.settings import CLASSES

SCHEME = "99LUNGAI"  # private coding scheme of this system's concepts
SR_SERIES_NUMBER = 7701
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
MANUFACTURER = "lung-ct-triage"
DICOM_UID_SYSTEM = "urn:dicom:uid"
# SNOMED CT concepts of the verdicts
VERDICTS = {
    "normal": ("17621005", "Normal"),
    "benign": ("3898006", "Neoplasm, benign"),
    "malignant": ("363358000", "Malignant tumor of lung"),
}


@dataclass(frozen=True)
class Uids:
    series: str  # the SR's new series
    sop_instance: str  # the SR itself
    tracking: str  # the measurement group's tracking UID
    device: str  # the algorithm as an observer device (one per model version)
    fhir_id: str  # the DiagnosticReport's logical id


def derived_uid(*parts: str) -> str:
    """A `2.25.` UID from a name-based (SHA-1, RFC 4122 version 5) UUID of `parts`: the same
    parts always give the same UID."""
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_OID, "\n".join(parts)).int)


def uids(study_uid: str, report: str, model: str = "") -> Uids:
    """The identifiers of one report version of one study, the same on every call (derived
    from the study and report version). A study scored again whole after more of it arrived
    (`model:<name>:<version>@batch-<id>`, `scoring.grown`) gets a new SR, DICOM objects being
    immutable, but the same DiagnosticReport id: the EHR's report is updated in place."""
    seed = "\n".join([MANUFACTURER, study_uid, report])
    resource = "\n".join([MANUFACTURER, study_uid, report.split("@batch-")[0]])
    return Uids(
        series=derived_uid(seed, "series"),
        sop_instance=derived_uid(seed, "sr"),
        tracking=derived_uid(seed, "tracking"),
        device=derived_uid(MANUFACTURER, model, "device"),
        fhir_id=f"lung-{hashlib.sha256(resource.encode()).hexdigest()[:40]}",
    )


def _code(value: str, meaning: str, scheme: str = SCHEME) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def structured_report(report: StudyReport, evidence: Evidence) -> Any:
    """The Comprehensive 3D SR (TID 1500) of this report version."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    ids = uids(evidence.study_uid, report.report, f"{report.model_name} {report.model_version}")
    parameters = [f"data version {report.data_version}", f"report {report.report}"]
    if report.rule:
        parameters.append(f"study rule: {report.rule}")
    algorithm = hd.sr.AlgorithmIdentification(
        name=report.model_name,
        version=report.model_version,
        parameters=parameters,
        family=codes.DCM.ArtificialIntelligence,
        manufacturer=MANUFACTURER,
    )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=ids.device,
            name=report.model_name,
            manufacturer_name=MANUFACTURER,
            model_name=f"{report.model_name} {report.model_version}"[:64],
        ),
    )
    measurements = [
        hd.sr.Measurement(
            name=_code(f"p-{name}", f"Probability of {name}"[:64]),
            value=round(report.probabilities[name], 6),
            unit=codes.UCUM.NoUnits,
            derivation=codes.SCT.Mean,
        )
        for name in CLASSES
    ]
    measurements.append(
        hd.sr.Measurement(
            name=_code("p-malignant", "Probability of malignant"),
            value=round(report.max_p_malignant, 6),
            unit=codes.UCUM.NoUnits,
            derivation=codes.SCT.Maximum,
        )
    )
    verdict_code, verdict_meaning = VERDICTS[report.label]
    driving = [evidence.by_path[path] for path in report.driving if path in evidence.by_path]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=ids.tracking,
            identifier=f"lung CT triage {report.report_status} report",
        ),
        finding_type=codes.SCT.Lung,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Lung)],
        measurements=measurements,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=_code("study-verdict", "Study verdict"),
                value=_code(verdict_code, verdict_meaning, "SCT"),
            ),
            *(
                hd.sr.QualitativeEvaluation(
                    name=_code("caution", "Caution"), value=_code(c.code, c.meaning)
                )
                for c in report.cautions
            ),
        ],
        source_images=[
            hd.sr.SourceImageForMeasurementGroup(
                referenced_sop_class_uid=str(ds.SOPClassUID),
                referenced_sop_instance_uid=str(ds.SOPInstanceUID),
            )
            for ds in driving
        ]
        or None,
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[group],
        title=codes.DCM.ImagingMeasurementReport,
    )
    final = report.report_status == "final"
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence.datasets,
        content=content,
        series_instance_uid=ids.series,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=ids.sop_instance,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=final,
        is_verified=final,
        verifying_observer_name=_person_name(report.reviewer) if final else None,
        verifying_organization="lung CT triage review" if final else None,
    )
    uncleared = any(c.code == GATE_NOT_PASSED for c in report.cautions)
    warning = "; not for clinical use" if uncleared else ""
    sr.SeriesDescription = f"AI lung CT triage ({report.report_status}{warning})"
    if final:  # amends the model's preliminary report of the same result
        sr.PredecessorDocumentsSequence = [_reference(evidence.study_uid, report.preliminary)]
    elif report.replaces:  # the study scored again whole replaces what was sent of a part
        sr.PredecessorDocumentsSequence = [
            _reference(evidence.study_uid, earlier) for earlier in report.replaces
        ]
    return sr


def _reference(study_uid: str, report: str) -> Any:
    """The SR of report version `report` of the study (its UIDs are derived, see `uids`)."""
    from pydicom.dataset import Dataset

    referenced = uids(study_uid, report)
    instance = Dataset()
    instance.ReferencedSOPClassUID = COMPREHENSIVE_3D_SR
    instance.ReferencedSOPInstanceUID = referenced.sop_instance
    series = Dataset()
    series.SeriesInstanceUID = referenced.series
    series.ReferencedSOPSequence = [instance]
    study = Dataset()
    study.StudyInstanceUID = study_uid
    study.ReferencedSeriesSequence = [series]
    return study


def _person_name(username: str | None) -> str:
    """A reviewer's sign-in name as a DICOM person name (family name only)."""
    cleaned = "".join(c for c in (username or "reviewer") if c.isalnum() or c in " .-_")
    return cleaned[:64] or "reviewer"


def diagnostic_report(report: StudyReport, evidence: Evidence) -> Any:
    """The FHIR R5 DiagnosticReport of this report version, validated by fhir.resources."""
    from fhir.resources.diagnosticreport import DiagnosticReport

    study_uid = evidence.study_uid
    ids = uids(study_uid, report.report)
    first = evidence.datasets[0]
    device = {
        "resourceType": "Device",
        "id": "algorithm",
        "name": [{"value": report.model_name, "type": "registered-name"}],
        "version": [{"value": report.model_version}],
        "manufacturer": MANUFACTURER,
    }
    observations = [
        {
            "resourceType": "Observation",
            "id": f"p-{name}",
            "status": report.report_status,
            "code": {
                "coding": [{"system": f"urn:{SCHEME}", "code": f"p-{name}"}],
                "text": f"Mean probability of {name} over the study's slices",
            },
            "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "39607008"}]},
            "valueQuantity": {
                "value": round(report.probabilities[name], 6),
                "unit": "1",
                "system": "http://unitsofmeasure.org",
                "code": "1",
            },
            "device": {"reference": "#algorithm"},
            "derivedFrom": [_imaging_study(study_uid)],
        }
        for name in CLASSES
    ]
    code, meaning = VERDICTS[report.label]
    subject_id = str(first.get("PatientID", "") or "").strip()
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": ids.fhir_id,
        "identifier": [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{ids.sop_instance}"}],
        "status": report.report_status,
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "25045-6"}],
            "text": "AI lung CT triage",
        },
        "issued": (report.reviewed_at or report.scored_at).isoformat(),
        "contained": [device, *observations],
        "result": [{"reference": f"#{o['id']}"} for o in observations],
        "study": [_imaging_study(study_uid)],
        "conclusion": _conclusion(report),
        "conclusionCode": [
            {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": meaning}]}
        ],
    }
    if subject_id:
        resource["subject"] = {"type": "Patient", "identifier": {"value": subject_id}}
    if report.reviewer:
        resource["resultsInterpreter"] = [{"display": report.reviewer}]
    return DiagnosticReport.model_validate(resource)


def _imaging_study(study_uid: str) -> dict[str, Any]:
    return {
        "type": "ImagingStudy",
        "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{study_uid}"},
    }


def _conclusion(report: StudyReport) -> str:
    said = f"{report.label} by {report.reviewer}'s review" if report.reviewer else report.label
    return (
        f"Study {said}; model {report.model_name} v{report.model_version} called it "
        f"{report.predicted_class} over {report.n_slices} slices "
        f"(highest slice probability of malignant {report.max_p_malignant:.1%}). "
        "Decision support: a clinician decides." + "".join(f" {c.words}" for c in report.cautions)
    )
