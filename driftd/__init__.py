"""driftd: a GitOps drift detector for Kubernetes and AWS."""

__version__ = "0.1.0"
