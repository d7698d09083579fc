"""Choosing layers by name: the one regex selection every experiment uses."""

from __future__ import annotations

import re

from layersim.errors import LayersimError


def select_layers(layers: list[str], pattern: str, *, what: str = "layer pattern", include_logits: bool = False) -> list[str]:
    """The layers whose names match the regex ``pattern`` (``re.search``), in their order.

    ``logits`` is left out unless ``include_logits``. ``what`` names the setting in the error
    raised when the pattern is not a regex or matches no layer.

    >>> select_layers(["conv", "b1.relu", "b2.relu", "logits"], r"\\.relu$")
    ['b1.relu', 'b2.relu']
    """
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise LayersimError(f"the {what} {pattern!r} is not a regular expression ({err})") from err
    chosen = [l for l in layers if (include_logits or l != "logits") and regex.search(l)]
    if not chosen:
        raise LayersimError(f"no layer matches the {what} {pattern!r}; layers: {', '.join(layers)}")
    return chosen
