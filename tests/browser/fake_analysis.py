"""The fake API's circuit analysis (issue 13) and sign-in (issue 14) routes, in the real API's shapes
(circuitboard/api/routes/analysis.py, circuitboard/api/routes/session.py), computed simply and deterministically
from the fixture graphs."""

from __future__ import annotations

import difflib
import secrets
from collections.abc import Callable

from fake_jobs import FakeJobs, JobFailed
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

FEATURE = "cross layer transcoder"
TOPICS = ["Texas", "say Austin", "capital cities", "Dallas", "states", "geography"]


def _kind(d: dict) -> str:
    t = d["feature_type"]
    return {"embedding": "embedding", "logit": "logit", FEATURE: "feature"}.get(t, "error")


def _parts(d: dict) -> tuple[int, int]:
    """(layer, feature index / token id) from the node id, -1 layer for embeddings."""
    head, mid, _ = d["node_id"].split("_")
    return (-1 if head == "E" else int(head)), int(mid)


def suggest(graph: dict, body: dict) -> dict:
    """Feature nodes grouped by their label's topic (granularity > 0.7 also splits by layer), largest first."""
    pinned = set(body.get("pinned_ids") or [])
    feats = [
        d
        for d in graph["nodes"]
        if d["feature_type"] == FEATURE and (not body.get("pinned_only") or d["node_id"] in pinned)
    ]
    feats = sorted(feats, key=lambda d: d.get("influence") or 1.0)[:40]
    fine = float(body.get("granularity", 0.5)) > 0.7
    groups: dict[str, list[str]] = {}
    for d in feats:
        topic = next((t for t in TOPICS if t in (d.get("clerp") or "")), "other")
        key = f"{topic} L{_parts(d)[0]}" if fine else topic
        groups.setdefault(key, []).append(d["node_id"])
    ranked = sorted(((k, v) for k, v in groups.items() if len(v) > 1), key=lambda kv: -len(kv[1]))[:6]
    total = max(1, len(feats))
    return {"supernodes": [[k, *v] for k, v in ranked], "scores": [round(len(v) / total, 4) for _, v in ranked]}


def _effect(p: float, m: float) -> dict:
    return {
        "predicted": [],
        "measured": {"frozen": [], "free": []},
        "predicted_effect": p,
        "measured_effect": {"frozen": m, "free": m},
    }


def validate(graph: dict, body: dict) -> dict:
    """Predicted effect ∝ group size; measured agrees except for groups whose label contains "odd"."""
    sn = body.get("supernodes") or []
    if not sn:
        raise HTTPException(422, "supernodes: at least one")
    ids = {d["node_id"] for d in graph["nodes"]}
    groups = []
    for k, g in enumerate(sn):
        unknown = [m for m in g[1:] if m not in ids]
        if unknown:
            raise HTTPException(422, f"supernodes.{k}: unknown node {unknown[0]!r}")
        pred = -0.4 * len(g[1:]) / (1 + k)
        meas = pred * (0.95 if "odd" not in g[0] else -0.6)
        groups.append(
            {
                "label": g[0],
                "node_ids": g[1:],
                "predicted_effect": round(pred, 4),
                "measured_effect": round(meas, 4),
                "agrees": "odd" not in g[0],
                "ablate": _effect(pred, meas),
                "steer": {"x-1": _effect(-2 * pred, -2 * meas), "x2": _effect(-pred, -meas)},
            }
        )
    total = sum(g["predicted_effect"] for g in groups)
    circuit = {"sufficiency": _effect(0.2 * total, 0.25 * total), "necessity": _effect(total, 0.9 * total)}
    return {"targets": [], "modes": ["frozen", "free"], "measured_mode": "free", "groups": groups, "circuit": circuit}


def _alignment(a: dict, b: dict) -> list[tuple[int, int]]:
    ta, tb = a["metadata"]["prompt_tokens"], b["metadata"]["prompt_tokens"]
    pairs: list[tuple[int, int]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=ta, b=tb, autojunk=False).get_opcodes():
        n = min(i2 - i1, j2 - j1) if op in ("equal", "replace") else 0  # a replaced run lines up from its end
        pairs += [(i2 - n + k, j2 - n + k) for k in range(n)]
    return pairs


def _diff_node(da: dict | None, db: dict | None) -> dict:
    d = da or db
    assert d is not None
    layer, feature = _parts(d)
    act_a, act_b = (da or {}).get("activation"), (db or {}).get("activation")
    status = "only_a" if db is None else "only_b" if da is None else "shared"
    change = 1.0
    if status == "shared":
        x, y = act_a or 0.0, act_b or 0.0
        change = abs(x - y) / max(abs(x), abs(y), 1e-9)
        status = "changed" if change > 0.01 else "shared"
    return {
        "id": da["node_id"] if da else f"b:{db['node_id']}",
        "node_id_a": da and da["node_id"],
        "node_id_b": db and db["node_id"],
        "feature_type": _kind(d),
        "layer": layer,
        "feature": feature,
        "ctx_idx_a": da and da["ctx_idx"],
        "ctx_idx_b": db and db["ctx_idx"],
        "status": status,
        "activation_a": act_a,
        "activation_b": act_b,
        "influence_a": (da or {}).get("influence"),
        "influence_b": (db or {}).get("influence"),
        "change": round(change, 4),
    }


def diff(a: dict, b: dict) -> dict:
    """Nodes matched by (kind, layer, index) at aligned positions; links by their matched ends."""
    if a["metadata"]["info"].get("model") != b["metadata"]["info"].get("model"):
        raise HTTPException(409, "graphs: traced with different models")
    align = _alignment(a, b)
    b_to_a = {j: i for i, j in align}
    key = lambda d, pos: (_kind(d), *_parts(d), pos)  # noqa: E731
    in_a = {key(d, d["ctx_idx"]): d for d in a["nodes"]}
    in_b = {key(d, b_to_a.get(d["ctx_idx"], -1 - d["ctx_idx"])): d for d in b["nodes"]}
    nodes = [_diff_node(in_a.get(k), in_b.get(k)) for k in {**in_a, **in_b}]
    nodes.sort(key=lambda n: -n["change"])
    id_a = {n["node_id_b"]: n["node_id_a"] or n["id"] for n in nodes if n["node_id_b"]}
    wa = {(lk["source"], lk["target"]): lk["weight"] for lk in a["links"]}
    wb = {(id_a[lk["source"]], id_a[lk["target"]]): lk["weight"] for lk in b["links"]}
    links = []
    for s, t in {**wa, **wb}:
        x, y = wa.get((s, t)), wb.get((s, t))
        status = (
            "only_a"
            if y is None
            else "only_b"
            if x is None
            else "changed"
            if abs((x or 0) - (y or 0)) > 1e-6
            else "shared"
        )
        links.append(
            {
                "source": s,
                "target": t,
                "weight_a": x,
                "weight_b": y,
                "delta": round((y or 0) - (x or 0), 5),
                "status": status,
            }
        )
    links.sort(key=lambda lk: -abs(lk["delta"]))
    summary = {k: sum(n["status"] == k for n in nodes) for k in ("only_a", "only_b", "shared", "changed")}
    return {"alignment": align, "summary": summary, "nodes": nodes, "links": links}


def validation_phases(body: dict) -> list[tuple[str, int]]:
    """One phase, "validate", of the real validation's forward passes (engine/validation.py `n_runs`): per mode
    (frozen, free) the clean run, an ablation and two steers per group, and the circuit's two runs."""
    n = len(body.get("supernodes") or [])
    return [("validate", 2 * (1 + 3 * n + 2))]


def add_analysis_routes(app: FastAPI, graph_of: Callable[[str], dict], jobs: FakeJobs) -> None:
    @app.post("/api/graphs/{slug}/supernodes/suggest")
    async def suggest_route(slug: str, req: Request):
        return suggest(graph_of(slug), await req.json())

    @app.post("/api/graphs/{slug}/validate")
    async def validate_route(slug: str, req: Request):
        """202 and a job (input errors at once); a group labelled "fail ..." makes the job fail at its end,
        one labelled "slow ..." makes it take 8 s."""
        graph, body = graph_of(slug), await req.json()
        result = validate(graph, body)

        def finish(job: dict) -> dict:
            failing = [g["label"] for g in result["groups"] if g["label"].startswith("fail")]
            if failing:
                raise JobFailed(f"supernodes: {failing[0]!r} could not be ablated: the model ran out of memory")
            return result

        slow = any(g[0].startswith("slow") for g in body.get("supernodes") or [])  # time to cancel it
        seconds = 8.0 if slow else 1.5
        job = jobs.start("validate", validation_phases(body), seconds, finish)
        return JSONResponse({"job": jobs.public(job)}, 202)

    @app.get("/api/graphs/{a}/diff/{b}")
    def diff_route(a: str, b: str):
        return diff(graph_of(a), graph_of(b))


def add_session_routes(app: FastAPI, users: dict[str, str]) -> None:
    """A shared server's sign-in: `users` maps API tokens to names; every other /api call needs a session (401)."""
    sessions: dict[str, str] = {}

    def who(req: Request) -> str | None:
        return sessions.get(req.cookies.get("cb_session", ""))

    @app.middleware("http")
    async def require_user(request: Request, call_next):
        path = request.url.path
        if path.startswith("/api/") and path != "/api/session" and who(request) is None:
            return JSONResponse({"detail": "auth: sign in first"}, 401)
        return await call_next(request)

    @app.get("/api/session")
    def get_session(req: Request):
        name = who(req)
        return {
            "auth": "required",
            "user": name and {"name": name, "is_admin": False},
            "via": "session" if name else "anonymous",
            "csrf_token": None,
        }

    @app.post("/api/session")
    async def sign_in(req: Request):
        body = await req.json()
        name = users.get(body.get("token") or "")
        if name is None:
            raise HTTPException(401, "auth: unknown token, or wrong name or password")
        sid = secrets.token_hex(8)
        sessions[sid] = name
        out = JSONResponse(
            {"auth": "required", "user": {"name": name, "is_admin": False}, "via": "session", "csrf_token": "csrf-1"}
        )
        out.set_cookie("cb_session", sid, httponly=True, samesite="strict")
        return out

    @app.delete("/api/session")
    def sign_out(req: Request):
        sessions.pop(req.cookies.get("cb_session", ""), None)
        out = Response(status_code=204)
        out.delete_cookie("cb_session")
        return out
