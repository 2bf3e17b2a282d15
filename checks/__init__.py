"""Data-quality suites (great-expectations) and the incomplete-report flags."""
