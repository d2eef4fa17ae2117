"""Languages: Flask-Babel message catalogues, Chinese source strings, the reader's choice.

The source strings are Simplified Chinese (the default locale, ``zh_CN``); ``storefront/translations``
holds the other languages' catalogues (``en``). The reader's language is, in order: ``?lang=`` (then
remembered in the ``lang`` cookie), the ``lang`` cookie, the browser's ``Accept-Language``, Chinese.
How to extract, update and compile the catalogues: README, "Languages".
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, current_app, g, has_request_context, request
from flask_babel import Babel, get_locale, get_translations, gettext, lazy_gettext

from .machine import is_machine_endpoint

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
DEFAULT_LOCALE = "zh_CN"
# Locale -> (the <html lang> value, the language's own name for the switch).
LANGUAGES: dict[str, tuple[str, str]] = {"zh_CN": ("zh-CN", "中文"), "en": ("en", "English")}
LANG_COOKIE = "lang"
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600

babel = Babel()
log = logging.getLogger(__name__)


def _(message: str, **variables: object) -> str:
    """Translate ``message`` into the reader's language; ``%(name)s`` placeholders come from ``variables``."""
    return gettext(message, **variables)


def lazy(message: str, **variables: object):  # noqa: ANN201 (flask_babel's LazyString)
    """``_`` evaluated when the text is shown: for module-level tables built before any request."""
    return lazy_gettext(message, **variables)


def N_(message: str) -> str:  # noqa: N802 (the gettext convention)
    """Mark ``message`` for extraction only; it is translated later (the strings JavaScript shows)."""
    return message


def _matchers(translations: object, reverse: bool) -> tuple[dict[str, str], list[tuple[re.Pattern[str], str]]]:
    """Exact texts and placeholder patterns of one catalogue, source -> translation (or back)."""
    cache = getattr(translations, "_storefront_matchers", None)
    if cache is None:
        cache = {}
        try:
            translations._storefront_matchers = cache  # type: ignore[attr-defined]
        except AttributeError:
            pass
    if reverse not in cache:
        catalogue = {k: v for k, v in getattr(translations, "_catalog", {}).items()
                     if isinstance(k, str) and k and isinstance(v, str) and v}
        pairs = [(v, k) for k, v in catalogue.items()] if reverse else list(catalogue.items())
        patterns = []
        for text, other in pairs:
            if "%(" not in text:
                continue
            parts = re.split(r"%\((\w+)\)s", text)
            if len(set(parts[1::2])) != len(parts[1::2]):
                continue  # a name used twice: not reversible
            regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts))
            patterns.append((re.compile(f"^{regex}$", re.S), other))
        cache[reverse] = (dict(pairs), patterns)
    return cache[reverse]


def _convert(text: str, reverse: bool) -> str:
    translations = get_translations()
    exact, patterns = _matchers(translations, reverse)
    if text in exact:
        return exact[text]
    for pattern, template in patterns:
        found = pattern.match(text)
        if found:
            return template % found.groupdict()
    return text


def translate_data(text: str | None) -> str:
    """A stored text in the reader's language when the catalogue knows it.

    Order events keep their note in the source language (``to_source``); demo products are
    catalogue strings too. Anything else (a merchant's own product) is shown as stored.
    """
    if not text:
        return ""
    if not has_request_context() or current_locale() == DEFAULT_LOCALE:
        return str(text)
    return _convert(str(text), reverse=False)


def to_source(text: str) -> str:
    """``text``, translated for this request, back in the source language: what is stored."""
    if not text or not has_request_context() or current_locale() == DEFAULT_LOCALE:
        return str(text)
    return _convert(str(text), reverse=True)


def normalise(tag: str | None) -> str | None:
    """A language tag (``en-US``, ``zh``, ``zh_CN``, ``zh-Hans``) as one of our locales, or None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    return {"zh": "zh_CN", "en": "en"}.get(primary)


def select_locale() -> str:
    """The reader's locale: ``?lang=``, then the ``lang`` cookie, then ``Accept-Language``, then Chinese."""
    if not has_request_context() or is_machine_endpoint():
        return DEFAULT_LOCALE  # WeChat Pay's notifications: no reader, whatever headers came
    asked = normalise(request.args.get("lang"))
    if asked:
        g.lang_chosen = asked  # remembered in the cookie by remember_choice()
        return asked
    remembered = normalise(request.cookies.get(LANG_COOKIE))
    if remembered:
        return remembered
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"])
    return normalise(best) or normalise(current_app.config.get("BABEL_DEFAULT_LOCALE")) or DEFAULT_LOCALE


def current_locale() -> str:
    """The locale of this request as one of ``LANGUAGES``' keys."""
    if not has_request_context():
        return DEFAULT_LOCALE
    return normalise(str(get_locale() or DEFAULT_LOCALE)) or DEFAULT_LOCALE


def html_lang() -> str:
    """The ``<html lang>`` value of this request's language (``zh-CN`` or ``en``)."""
    return LANGUAGES[current_locale()][0]


def lang_url(locale: str) -> str:
    """This page's address (path and query, no host) in another language."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    args.append(("lang", LANGUAGES[locale][0]))
    return f"{request.script_root}{request.path}?{urlencode(args)}"


# Strings static/js shows: templates hand them over as JSON in <meta name="sf-i18n" content='…'>
# (data, not a script: the Content-Security-Policy allows no inline script).
JS_MESSAGES = (
    N_("您已取消支付，订单仍待支付，可以随时重新支付。"),
    N_("支付未完成："),
    N_("支付未完成。请重试，或换用其他支付方式。"),
    N_("微信支付"),
    N_("确定"),
    N_("模拟器 · 非真实微信"),
    N_("支付失败"),
    N_("网络异常"),
)


def js_strings() -> dict[str, str]:
    """Source string -> this reader's translation, for static/js (empty in the source language)."""
    if current_locale() == DEFAULT_LOCALE:
        return {}
    return {message: gettext(message) for message in JS_MESSAGES}


def remember_choice(response: Response) -> Response:
    """``?lang=`` is remembered in a cookie; pages vary by the reader's language."""
    if is_machine_endpoint():
        return response  # no reader, no page: the default locale whatever came (``select_locale``)
    chosen = g.get("lang_chosen")
    if chosen and request.cookies.get(LANG_COOKIE) != LANGUAGES[chosen][0]:
        response.set_cookie(LANG_COOKIE, LANGUAGES[chosen][0], max_age=LANG_COOKIE_MAX_AGE,
                            samesite="Lax", httponly=True, path="/")
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    return response


def compile_catalogues(directory: Path = TRANSLATIONS) -> list[Path]:
    """Compile each ``messages.po`` whose ``messages.mo`` is missing or older; the compiled files.

    ``make translations`` (part of ``make init``) runs this; the app runs it at start-up too, so a
    fresh clone served any other way still speaks every language. The .mo files are git-ignored.
    """
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    compiled = []
    for po in sorted(directory.glob("*/LC_MESSAGES/messages.po")):
        mo = po.with_suffix(".mo")
        if mo.is_file() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as source:
            catalogue = read_po(source)
        # Written aside, then renamed: several workers starting at once never read half a file.
        handle, temporary = tempfile.mkstemp(dir=po.parent, suffix=".mo.tmp")
        try:
            with os.fdopen(handle, "wb") as target:
                write_mo(target, catalogue)
            os.replace(temporary, mo)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        compiled.append(mo)
    return compiled


def register(app: Flask) -> None:
    """Flask-Babel with our catalogues, the locale selector and the template helpers."""
    try:
        for mo in compile_catalogues():
            log.info("compiled the message catalogue %s", mo)
    except OSError as exc:  # a read-only checkout: make init compiles them at install time
        log.warning("could not compile the message catalogues: %s", exc)
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    babel.init_app(app, locale_selector=select_locale)
    app.after_request(remember_choice)
    app.jinja_env.globals.update(
        html_lang=html_lang, lang_url=lang_url, current_locale=current_locale,
        LANGUAGES=LANGUAGES, js_strings=js_strings,
    )
    app.jinja_env.filters["tr"] = translate_data
