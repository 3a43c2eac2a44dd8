"""Datasets: the registry, the official annotation JSON, converters from raw layouts, checks and loading."""
