"""Deployment: scoring raw images, class attention heatmaps and exported models."""
