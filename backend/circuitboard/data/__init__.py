"""The data stage, between the engine and its two users (training and the atlas): the text corpus
(`corpus`, with its registry sources in `corpus_sources` and R data reading in `rdata`) and the activation
cache (`activations`: one writer, one reader, one sequence packing)."""
