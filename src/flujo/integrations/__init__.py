"""Integrations with the tools applications already run; each needs its extra
(``pip install 'flujo[celery]'``) and is imported by its own module name:
``flujo.integrations.celery``."""
