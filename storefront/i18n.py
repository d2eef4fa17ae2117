"""Translation hooks. UI strings are wrapped in ``_()`` so a catalogue can be added later."""

from gettext import NullTranslations

_translations = NullTranslations()


def _(message: str, **variables: object) -> str:
    """Translate ``message``; ``%(name)s`` placeholders are filled from ``variables``."""
    text = _translations.gettext(message)
    return text % variables if variables else text
