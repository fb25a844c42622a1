"""Batch scoring of CT study folders into PostgreSQL, exactly once.

`inbox` (claims), `decode` (files to slices), `predictor` / `inference` (the model),
`engine` (one study, batch by batch), `store` (rows), `study` (the study verdict).
The DAG's task functions are in `lung_model.pipelines.batch_score`.
"""
