"""Transcoder training on the activation cache (`circuitboard train-transcoders`): `train.train_transcoders` runs a
whole set, per-layer (`layer.train_layer` one TopK layer's steps, `transcoder` that module) or cross-layer
(`clt_train`, whose steps also train a JumpReLU layer of a per-layer set; `clt` the module); `run` is what every
run shares, `export` the files written, `config` the settings and budgets."""
