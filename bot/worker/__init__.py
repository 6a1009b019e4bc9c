"""The Celery wiring and the process life cycle: the app, the tasks, Beat's
schedule, the runtime and the ``bot run`` supervisor. The only package that
imports Celery.
"""
