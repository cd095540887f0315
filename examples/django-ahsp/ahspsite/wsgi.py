import os
import re
import time

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ahspsite.settings")

application = get_wsgi_application()

# A regression to calibrate the gate on (`cargo xtask gate-calibration --app
# django-ahsp`): AHSP_EXAMPLE_SLOWDOWN=50 makes the rekap page take half as
# long again in the worker. The whole request as Django handles it is timed
# (the session from Redis, the user, the view, the template) and the worker
# sleeps that share before it answers, so the page's distribution, tails
# included, moves by that share. A slowdown of the view alone moved the page's
# p95 by +29 % for a "50 %": the rest of its time was Django's own. Only what
# comes before the worker has the request (gunicorn's accept queue) and the
# network are not slowed.
SLOWDOWN = float(os.environ.get("AHSP_EXAMPLE_SLOWDOWN") or 0) / 100.0
SLOWED = re.compile(r"/detail_project/\d+/rekap-rab/")

if SLOWDOWN > 0:
    django_application = application

    def application(environ, start_response):
        started = time.perf_counter()
        response = django_application(environ, start_response)
        if SLOWED.fullmatch(environ.get("PATH_INFO", "")):
            # The response is rendered; gunicorn sends nothing of it until
            # it is returned.
            time.sleep((time.perf_counter() - started) * SLOWDOWN)
        return response
