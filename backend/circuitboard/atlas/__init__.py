"""Feature atlas: what every transcoder feature means.

`build.build_atlas` reads the activation cache (`circuitboard.data.activations`) and the transcoders and
writes `models/<preset>/atlas.sqlite` (`store.AtlasStore`): per layer `encode` turns cached MLP inputs into
sparse activations, `layer_stats` accumulates them, `layer_rows` makes the stored rows (`params` says what is
kept). `records.feature_record` is what the API serves; `labels` makes the short automatic labels (and
optional LLM explanations); `search` finds features by label, token or example text; `export` writes
circuit-tracer's `features/` layout; `circuitboard atlas ...` lives in `circuitboard.cli.atlas`.
"""
