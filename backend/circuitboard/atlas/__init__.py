"""Feature atlas: what every transcoder feature means.

`build.build_atlas` reads the activation cache and the transcoders and writes `models/<preset>/atlas.sqlite`
(`store.AtlasStore`); `records.feature_record` is what the API serves; `labels` makes the short automatic
labels (and optional LLM explanations); `search` finds features by label, token or example text; `export`
writes circuit-tracer's `features/` layout; `circuitboard atlas ...` lives in `circuitboard.cli.atlas`.
"""
