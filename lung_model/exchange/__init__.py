"""The hospital's side: studies in from the PACS over DICOM (`receiver`), results back out as a
DICOM SR (TID 1500) and a FHIR DiagnosticReport (`reports`, `deliveries`).

A layer of its own between `review` and `pipelines`: the amended report after a review reads
the review layer's records, and the DAG's task functions and the CLI call in here.
"""
