"""The one base class of layersim's input errors (all are ``ValueError`` s)."""


class LayersimError(ValueError):
    """Input that layersim cannot use; the message says what was wrong and what to do."""
