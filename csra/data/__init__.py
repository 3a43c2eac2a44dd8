"""Datasets: the known datasets (datasets.py), the official annotation JSON, converters from raw layouts, checks and
loading."""
