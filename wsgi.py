"""Entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi ...``."""

from storefront import create_app

app = create_app()
