"""The MLflow store and model registry: promotion gates, audit trail, lineage."""
