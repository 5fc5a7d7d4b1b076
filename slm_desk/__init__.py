"""slm-desk: small local models for narrow jobs, with validation, calibration and a safe way to fail."""

__version__ = "0.1.0"
