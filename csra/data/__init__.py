"""Datasets: the official annotation JSON, converters from raw layouts, and the torch Dataset."""
