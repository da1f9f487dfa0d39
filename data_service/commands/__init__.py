"""The commands of ``data-service`` (``cli`` parses the arguments and dispatches to them),
one module per command; ``common`` holds what several share (the models, the
lifecycle, one reconcile pass)."""
