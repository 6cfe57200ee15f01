"""The bench's measures, one module per family; ``bench/run.py`` runs them in order."""
