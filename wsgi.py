"""Entry point for gunicorn: `gunicorn wsgi:app` (see gunicorn.conf.py)."""

from swagstore import create_app

app = create_app()
