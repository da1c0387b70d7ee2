"""Bundled resources: icons, demo image and models (installed as ``cellpol_resources``)."""
