"""Evaluation: the one prediction path, the official metrics and the report files."""
