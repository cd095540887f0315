from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import connection
from django.db.models import Q
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render

from .models import Project

# One aggregating statement per page, as the AHSP application's fixed
# rekap does (its N+1 version was the history's slowest page).
REKAP_RAB = """
WITH lines AS (
    SELECT klasifikasi_id, jumlah FROM rab_lines WHERE project_id = %s
)
SELECT k.nama, coalesce(sum(l.jumlah), 0) AS subtotal
FROM klasifikasi k
LEFT JOIN lines l ON l.klasifikasi_id = k.id
WHERE k.project_id = %s
GROUP BY k.id, k.nama, k.urutan
ORDER BY k.urutan, k.id
"""

TOTALS = """
SELECT ahsp_ppn(%s::numeric), ahsp_dibulatkan(%s::numeric + ahsp_ppn(%s::numeric))
"""

TREE = """
SELECT k.id, k.nama, s.id, s.nama, p.id, p.kode, p.uraian, p.satuan, p.volume
FROM klasifikasi k
JOIN sub_klasifikasi s ON s.klasifikasi_id = k.id
JOIN pekerjaan p ON p.sub_klasifikasi_id = s.id
WHERE k.project_id = %s
ORDER BY k.urutan, k.id, s.urutan, s.id, p.urutan, p.id
"""


def visible_projects(user):
    return Project.objects.filter(Q(owner=user) | Q(members__user=user)).distinct()


def project_of(user, project_id):
    project = visible_projects(user).filter(pk=project_id).first()
    if project is None:
        raise Http404("no such project")
    return project


@login_required
def dashboard(request):
    projects = visible_projects(request.user).order_by("-updated_at", "id")[:50]
    return render(request, "projects/dashboard.html", {"projects": projects})


@login_required
def rekap_rab(request, project_id):
    project = project_of(request.user, project_id)
    with connection.cursor() as cursor:
        cursor.execute(REKAP_RAB, [project.id, project.id])
        rows = cursor.fetchall()
        sebelum_ppn = sum((subtotal for _, subtotal in rows), Decimal(0))
        cursor.execute(TOTALS, [sebelum_ppn, sebelum_ppn, sebelum_ppn])
        ppn, dibulatkan = cursor.fetchone()
    return render(
        request,
        "projects/rekap_rab.html",
        {
            "project": project,
            "rows": rows,
            "sebelum_ppn": sebelum_ppn,
            "ppn": ppn,
            "dibulatkan": dibulatkan,
        },
    )


@login_required
def pekerjaan_tree(request, project_id):
    project = project_of(request.user, project_id)
    key = f"pekerjaan-tree:{project.id}:{project.updated_at.timestamp()}"
    tree = cache.get(key)
    if tree is None:
        with connection.cursor() as cursor:
            cursor.execute(TREE, [project.id])
            rows = cursor.fetchall()
        klasifikasi = {}
        for k_id, k_nama, s_id, s_nama, p_id, kode, uraian, satuan, volume in rows:
            k = klasifikasi.setdefault(k_id, {"id": k_id, "nama": k_nama, "sub": {}})
            s = k["sub"].setdefault(s_id, {"id": s_id, "nama": s_nama, "pekerjaan": []})
            s["pekerjaan"].append(
                {"id": p_id, "kode": kode, "uraian": uraian, "satuan": satuan, "volume": str(volume)}
            )
        tree = [
            {**k, "sub": list(k["sub"].values())} for k in klasifikasi.values()
        ]
        cache.set(key, tree, 60)
    return JsonResponse({"project": project.id, "klasifikasi": tree})


def ready(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    cache.get("ready")
    return HttpResponse("ready\n", content_type="text/plain")
