"""data-service: a sidecar HTTP data-access service in front of CouchDB."""

__version__ = "0.1.0"
