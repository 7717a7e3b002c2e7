"""A minimal stand-in for the Circuitboard API (docs/api.md) serving frontend/dist.

Used to develop and test the page without the engine: graphs come from tests/browser/fixtures.py, jobs
(fake_jobs.py: traces here, validations in fake_analysis.py) emit real SSE progress events from a background thread
(with `fraction` and `eta_s`, and `phase: "done"` at the end), `POST /api/estimate` grows with tokens x feature
nodes and a trace past its limits is refused with a 422 naming `prompt`, tokenize checks target tokens,
interventions answer deterministically from a small fixed next-token table that the interventions shift smoothly
(so a sweep draws curves), with `top_k` and watched tokens. The end-to-end tests also
run against the real app.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from fake_analysis import add_analysis_routes, add_session_routes
from fake_jobs import FakeJobs
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fixtures import make_graph, token_id, tokenize

DIST = Path(__file__).resolve().parents[2] / "frontend" / "dist"


# Features the fake search finds (labels with markup: the page must show them as text).
SEARCHABLE = [
    {"layer": 2, "index": 4242, "label": "Texas <b>state</b> names", "max_act": 9.5, "frequency": 0.0021},
    {"layer": 4, "index": 77, "label": "say Austin", "max_act": 7.0, "frequency": 0.0005},
    {"layer": 1, "index": 9, "label": "always-on <img src=x onerror=alert(9)>", "max_act": 3.0, "frequency": 0.61},
]


# The fake model's next-token logits, and how strongly an intervention's effect moves each (see `fake_next`).
NEXT_LOGITS = {
    " Austin": (2.0, -0.6),
    " Texas": (1.3, 0.6),
    " the": (0.6, 0.0),
    " Houston": (0.2, 0.1),
    " habit": (-1.0, 0.3),
    " rabbit": (-3.0, 0.9),
    " a": (-0.5, -0.1),
    " Dallas": (-1.2, 0.2),
    " cold": (-0.8, 0.4),
    " not": (-1.5, 0.0),
}
REST_LOGIT = 1.5  # the rest of the vocabulary, not listed

MAX_PROMPT_TOKENS = 256  # the server's default prompt limit (issue 16)
TRACE_PHASES = [("forward", 1), ("logits", 3), ("features", 8), ("prune", 1), ("export", 1)]
# The fake estimator's limits; a 200-token prompt at 10,000 feature nodes goes past the time limit.
ESTIMATE_LIMIT = {"seconds": 120.0, "bytes": 2 * 2**30}


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min"


def estimate(body: dict) -> dict:
    """POST /api/estimate in the real shape (circuitboard/api/routes/estimate.py, its reasons' wording too): time
    and peak memory grow with tokens x feature nodes; a prompt past the token limit does not fit either."""
    tokens = len(tokenize(body.get("prompt") or ""))
    nodes = int(body.get("max_feature_nodes") or 2000)
    seconds = round(0.5 + tokens * nodes * 2e-4, 1)
    peak = int(3e8 + tokens * nodes * 3500)
    limit = ESTIMATE_LIMIT
    reason = None
    if tokens > MAX_PROMPT_TOKENS:
        reason = f"prompt: {tokens} tokens, more than the limit of {MAX_PROMPT_TOKENS}"
    elif seconds > limit["seconds"] or peak > limit["bytes"]:
        reason = (
            f"prompt: {tokens:,} tokens would take ~{_duration(seconds)} and ~{peak / 2**30:.1f} GiB; this server"
            f" allows {_duration(limit['seconds'])} and {limit['bytes'] / 2**30:.1f} GiB; shorten the prompt or lower"
            " max_feature_nodes"
        )
    return {
        "tokens": tokens,
        "seconds": seconds,
        "peak_bytes": peak,
        "fits": reason is None,
        "limit": limit,
        "reason": reason,
    }


def one_token(text: str) -> bool:
    """The fake tokenizer's idea of a single token: an optional leading space, then one word."""
    return len(tokenize(text)) == 2 and tokenize(text)[1] == text


def fake_prob(text: str, effect: float = 0.0) -> float:
    """p(text) after the prompt when the interventions add up to `effect` (unknown single tokens: tiny)."""
    import math

    logits = {t: b + effect * k for t, (b, k) in NEXT_LOGITS.items()}
    z = sum(math.exp(v) for v in logits.values()) + math.exp(REST_LOGIT)
    return math.exp(logits[text]) / z if text in logits else 2e-6


def intervention_effect(interventions: list[dict]) -> float:
    """How far a request moves the fake logits: ablating +1.5 each, scaling by v 0.6·(1 − v), setting to v 0.05·v."""
    effect = 0.0
    for iv in interventions:
        mode, v = iv.get("mode"), float(iv.get("value") or 0)
        effect += {"zero": 1.5, "scale": 0.6 * (1 - v), "set": 0.05 * v}.get(mode, 0.0)
    return effect


def fake_next(effect: float, top_k: int, watch: list[str], n_tokens: int) -> dict:
    probs = sorted(((fake_prob(t, effect), t) for t in NEXT_LOGITS), reverse=True)
    top = [{"id": token_id(t), "text": t, "prob": round(p, 6)} for p, t in probs[:top_k]]
    tail = " the capital of Texas." if n_tokens > 1 else ""
    return {
        "top": top,
        "continuation": probs[0][1] + tail,
        "watch": [{"id": token_id(w), "text": w, "prob": round(fake_prob(w, effect), 8)} for w in watch],
    }


def feature_record(layer: int, index: int, label: str) -> dict:
    """An atlas record in the real shape: histogram, percentiles, input tokens, examples and quantile bands."""

    def example(words: list[str], acts: list[float], center: int) -> dict:
        return {
            "tokens": words,
            "token_ids": [token_id(w) for w in words],
            "acts": acts,
            "max_act": max(acts),
            "center": center,
            "seq": index,
            "position": center,
        }

    def band(hi: float) -> list[dict]:  # three examples, activations scaled to the band
        return [
            example(["Flights", " from", " Dallas", " to", " Austin"], [0, 0.1, hi, 0.3 * hi, 0.2], 2),
            example(["The", " city", " of", " Dallas", ",\n", "Texas"], [0, 0.2, 0.1, 0.9 * hi, 0.1, 0.4 * hi], 3),
            example(["\t", "big", "  D", " in", " the", " south"], [0.1, 0.2, 0.8 * hi, 0.1, 0, 0], 2),
        ]

    return {
        "layer": layer,
        "index": index,
        "label": label,
        "label_source": "auto",
        "auto_label": label,
        "explanation": "Fires on Texas-related tokens.",
        "max_act": 12.0,
        "mean_act": 2.4,
        "frequency": 0.0012,
        "n_active": 2457,
        "histogram": {"edges": [i * 1.2 for i in range(11)], "counts": [900, 300, 120, 60, 30, 12, 8, 4, 2, 1]},
        "quantile_values": [round(0.12 * (i + 1), 3) for i in range(100)],
        "top_logits": [{"id": 1, "text": " Austin", "value": 1.2}, {"id": 2, "text": " Texas", "value": 0.9}],
        "bottom_logits": [{"id": 3, "text": " Paris", "value": -0.8}],
        "top_input_tokens": [
            {"id": 5, "text": " Dallas", "value": 310.0, "count": 41, "mean": 7.6},
            {"id": 6, "text": " Houston", "value": 92.5, "count": 17, "mean": 5.4},
            {"id": 7, "text": "\n", "value": 11.0, "count": 9, "mean": 1.2},
        ],
        "examples": [
            example(["The", " city", " of", " Dallas", " <b>x</b>"], [0, 0.5, 1, 11.0, 2], 3),
            *band(10.0),
        ],
        "quantile_examples": [
            {"name": f"Interval {g} ({hi:.3g} to {hi * 0.7:.3g})", "examples": band(hi)}
            for g, hi in ((1, 8.0), (2, 5.5), (3, 3.0), (4, 1.2))
        ],
    }


def fake_frequency(layer: int, index: int) -> float:
    """A deterministic, log-uniform activation frequency in [1e-4, 1) for the density filter."""
    return round(10 ** (-4 + 4 * ((index * 7919 + layer * 104729) % 1000) / 1000), 6)


def create_fake_app(
    graphs: dict[str, dict] | None = None,
    job_seconds: float = 1.2,
    job_fraction: bool = True,
    users: dict[str, str] | None = None,
) -> FastAPI:
    """`job_fraction` False: job events without `fraction` / `eta_s` (the page then weighs the phases itself).
    `users` (API token -> name): a shared server where every call needs a signed-in user; without it there is no
    /api/session at all (404), as on a single-user server of before issue 14."""
    app = FastAPI(title="circuitboard-fake")
    store: dict[str, dict] = {}
    raw: dict[str, bytes] = {}  # serialised once: re-encoding 100k links per request would dominate open time
    created: dict[str, str] = {}
    subgraphs: dict[str, dict[str, dict]] = {}
    jobs = FakeJobs(with_fraction=job_fraction)
    labels: dict[tuple[int, int], str] = {}
    counter = itertools.count(1)

    def add(slug: str, g: dict) -> None:
        store[slug] = g
        raw[slug] = json.dumps(g, separators=(",", ":")).encode()
        created[slug] = datetime.now(UTC).isoformat()
        time.sleep(0.001)

    for slug, g in (graphs or {}).items():
        add(slug, g)

    def item(slug: str) -> dict:
        g = store[slug]
        return {
            "slug": slug,
            "prompt": g["metadata"]["prompt"],
            "model": "fixture-model",
            "transcoders": "fixture-plt",
            "created_at": created[slug],
            "n_nodes": len(g["nodes"]),
            "n_links": len(g["links"]),
            "source": "traced",
        }

    @app.get("/api/health")
    def health():
        return {"status": "ok", "version": "0.1.0", "device": "cpu", "engine": "ready"}

    @app.get("/api/config")
    def config():
        return {
            "model": {"model_name": "fixture-model", "transcoder_name": "fixture-plt", "n_layers": 6},
            "transcoders": "fixture-plt",
            "device": "cpu",
            "limits": {"max_prompt_tokens": MAX_PROMPT_TOKENS, "max_queue": 8, "max_upload_bytes": 50_000_000},
            "params": {
                "max_n_logits": {"min": 1, "max": 20, "default": 10},
                "desired_logit_prob": {"min": 0.5, "max": 0.99, "default": 0.95},
                "max_feature_nodes": {"min": 10, "max": 10000, "default": 2000},
                "node_threshold": {"min": 0.5, "max": 1.0, "default": 0.8},
                "edge_threshold": {"min": 0.5, "max": 1.0, "default": 0.98},
            },
        }

    @app.post("/api/tokenize")
    async def tok(req: Request):
        body = await req.json()
        toks = tokenize(body.get("prompt", ""))
        out = {
            "tokens": [{"id": token_id(t), "text": t} for t in toks],
            "top_next": [
                {"id": token_id(t), "text": t, "prob": p}
                for t, p in [(" Austin", 0.41), (" Texas", 0.2), (" the", 0.1)]
            ][: body.get("top_k", 10)],
            "n_tokens": len(toks),
            "too_long": len(toks) > MAX_PROMPT_TOKENS,
        }
        if "targets" in body:
            out["targets"] = [
                {
                    "text": t,
                    "ids": [token_id(p) for p in tokenize(t)[1:]],
                    "single": one_token(t),
                    "prob": fake_prob(t) if one_token(t) else None,
                }
                for t in body["targets"]
            ]
        return out

    def finish_trace(job: dict) -> None:
        slug = job["slug_req"] or f"trace-{next(counter)}"
        g = make_graph(
            slug=slug, prompt_tokens=tokenize(job["prompt"]), seed=len(job["prompt"]), target_tokens=job["targets"]
        )
        add(slug, g)
        job["slug"] = slug

    @app.post("/api/estimate")
    async def estimate_route(req: Request):
        return estimate(await req.json())

    @app.post("/api/graphs")
    async def create(req: Request):
        body = await req.json()
        prompt = body.get("prompt") or ""
        if not prompt.strip():
            raise HTTPException(422, "prompt: must not be empty")
        for slug, g in store.items():
            if g["metadata"]["prompt"] == prompt:
                return JSONResponse({"slug": slug, "cached": True, "graph_url": f"/api/graphs/{slug}"}, 201)
        est = estimate(body)
        if not est["fits"]:  # as the real API refuses it: FastAPI's list form, naming the prompt
            error = {"type": "value_error", "loc": ["body", "prompt"], "msg": est["reason"], "input": est["tokens"]}
            return JSONResponse({"detail": [error]}, 422)
        job = jobs.start(
            "graph",
            TRACE_PHASES,
            job_seconds,
            finish_trace,
            prompt=prompt,
            slug_req=body.get("slug"),
            targets=body.get("target_tokens"),
        )
        jid = job["id"]
        return JSONResponse({"job_id": jid, "position": 1, "events_url": f"/api/jobs/{jid}/events"}, 202)

    @app.get("/api/graphs")
    def list_graphs(q: str = "", page: int = 1, per_page: int = 20):
        slugs = sorted(store, key=lambda s: created[s], reverse=True)
        ql = q.lower()
        items = [item(s) for s in slugs if ql in s.lower() or ql in store[s]["metadata"]["prompt"].lower()]
        return {
            "items": items[(page - 1) * per_page : page * per_page],
            "total": len(items),
            "page": page,
            "per_page": per_page,
        }

    @app.get("/api/graphs/{slug}")
    def get_graph(slug: str):
        if slug not in store:
            raise HTTPException(404, f"slug: no graph {slug!r}")
        return Response(raw[slug], media_type="application/json")

    @app.delete("/api/graphs/{slug}")
    def delete_graph(slug: str):
        store.pop(slug, None)
        raw.pop(slug, None)
        return Response(status_code=204)

    @app.get("/api/graphs/{slug}/export")
    def export(slug: str):
        return JSONResponse(store[slug], headers={"Content-Disposition": f'attachment; filename="{slug}.json"'})

    @app.post("/api/graphs/{slug}/subgraphs")
    async def save_sub(slug: str, req: Request):
        body = await req.json()
        sid = uuid.uuid4().hex[:8]
        subgraphs.setdefault(slug, {})[sid] = {**body, "id": sid, "created_at": datetime.now(UTC).isoformat()}
        return JSONResponse({"id": sid, "url": f"/graph/{slug}?subgraph={sid}"}, 201)

    @app.get("/api/graphs/{slug}/subgraphs/{sid}")
    def get_sub(slug: str, sid: str):
        try:
            return subgraphs[slug][sid]
        except KeyError:
            raise HTTPException(404, "subgraph not found") from None

    @app.get("/api/graphs/{slug}/subgraphs")
    def list_sub(slug: str):
        return list(subgraphs.get(slug, {}).values())

    @app.post("/api/interventions")
    async def intervene(req: Request):
        body = await req.json()
        top_k, watch = int(body.get("top_k", 5)), body.get("watch", [])
        bad = [
            {
                "loc": ["body", "watch", i],
                "msg": f"watch.{i}: {w!r} is {len(tokenize(w)) - 1} tokens; a target must be exactly one token",
                "type": "value_error",
            }
            for i, w in enumerate(watch)
            if not one_token(w)
        ]
        if not 1 <= top_k <= 20:
            bad.append({"loc": ["body", "top_k"], "msg": "too big", "type": "less_than_equal", "ctx": {"le": 20}})
        if bad:
            return JSONResponse({"detail": bad}, 422)
        n_tokens = int(body.get("n_tokens", 10))
        active = [iv for iv in body.get("interventions", []) if iv.get("mode") in ("zero", "scale", "set")]
        before = fake_next(0.0, top_k, watch, n_tokens)
        return {"before": before, "after": fake_next(intervention_effect(active), top_k, watch, n_tokens)}

    @app.get("/api/features/search")
    def search(q: str = "", limit: int = 20):
        ql = q.strip().lower()
        hits = [f for f in SEARCHABLE if ql and (ql in f["label"].lower() or ql == f"l{f['layer']}/{f['index']}")]
        return {"items": hits[:limit]}

    @app.post("/api/features/labels")
    async def labels_of(req: Request):
        feats = [(int(a), int(b)) for a, b in (await req.json())["features"]]
        return {
            "labels": {f"{a}_{b}": labels.get((a, b), f"atlas label {a}/{b}") for a, b in feats},
            "frequencies": {f"{a}_{b}": fake_frequency(a, b) for a, b in feats},
        }

    @app.get("/api/features/{layer}/{index}")
    def feature(layer: int, index: int):
        if index % 2:  # half the features have no atlas record
            raise HTTPException(404, "no atlas record")
        return feature_record(layer, index, labels.get((layer, index), f"atlas label {layer}/{index}"))

    @app.put("/api/features/{layer}/{index}/label")
    async def set_label(layer: int, index: int, req: Request):
        labels[(layer, index)] = (await req.json())["label"]
        return feature(layer, index)

    @app.post("/api/graphs/import")
    async def import_graph(req: Request):
        form = await req.form()
        g = json.loads(await form["file"].read())
        slug = g["metadata"].get("slug") or f"import-{next(counter)}"
        add(slug, g)
        return JSONResponse(item(slug), 201)

    def graph_of(slug: str) -> dict:
        if slug not in store:
            raise HTTPException(404, f"slug: no graph {slug!r}")
        return store[slug]

    jobs.add_routes(app)
    add_analysis_routes(app, graph_of, jobs)
    if users is not None:
        add_session_routes(app, users)

    if DIST.exists():
        app.mount("/static", StaticFiles(directory=DIST), name="static")

    def index():
        return FileResponse(DIST / "index.html")

    for route in ("/", "/trace", "/graph/{slug}", "/diff/{a}/{b}", "/feature/{layer}/{index}"):
        app.add_api_route(route, index, methods=["GET"], include_in_schema=False)
    return app
