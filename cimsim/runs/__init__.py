"""Runs: sweeps, method comparisons, experiment files, result files, statistics, reports and
plots; one tidy row per point, appended durably."""
