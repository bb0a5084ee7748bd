# eli/structured: structured output (constrained decoding) with llguidance. SamplingParams'
# json_schema / json_object / regex / grammar / choice fields become an llguidance grammar
# (grammar.py, checked at construction), and at admission a per-request matcher (constraint.py)
# that the engine calls through its TokenConstraint seam (include/eli/token_constraint.h) to mask
# each sampled token. llguidance's tokenizer view of the model is built once per tokenizer
# (tokenizer.py).
from .constraint import LLGuidanceConstraint, make_constraint
from .grammar import STRUCTURED_FIELDS, grammar_for
from .tokenizer import ll_tokenizer

__all__ = ["LLGuidanceConstraint", "make_constraint", "STRUCTURED_FIELDS", "grammar_for", "ll_tokenizer"]
