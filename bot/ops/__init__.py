"""Operating a deployment: doctor, health and metrics endpoints, migrate and runs, evals and
insights from the command line."""
