"""facegate: a policy-enforcing, audited gateway in front of face-recognition vendor APIs."""

__version__ = "0.1.0"
