"""Studies: core.compare's arms, its budget in views, and the reports it writes."""
