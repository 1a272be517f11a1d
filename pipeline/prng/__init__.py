"""The reference workload, PRNG seed recovery, whole: generators/, kernels/, sieve/, data (history and
the data section of pipeline.yaml), chance, scoring, synth, jobs (the worker's job handlers) and
workload (what the engine asks of it). The engine (pipeline/ outside prng/ and steps/) never imports it.
"""
