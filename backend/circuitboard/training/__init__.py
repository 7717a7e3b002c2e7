"""Transcoder training on the activation cache (`circuitboard train-transcoders`): `train.train_transcoders`
runs every layer, `layer.train_layer` one layer's steps, `transcoder` the module being trained, `export` the
files written, `config` the settings and budgets."""
