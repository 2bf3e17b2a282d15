"""Orchestration: the pipeline, the command line, run locking."""
