"""PRNG generators: plain-Python references (`reference`) and vectorised torch versions (`torch_gen`).

Only the light reference module is imported here, so `from pipeline.prng.generators import generate`
does not pull in torch.
"""

from pipeline.prng.generators.reference import GENERATORS, generate, outputs_at

__all__ = ["GENERATORS", "generate", "outputs_at"]
