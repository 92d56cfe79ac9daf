"""The bundled demo: a synthetic Sentinel-2 L2A-like time series served through a real STAC API."""
