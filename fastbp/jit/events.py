"""The kinds of event a recorded program is made of (:mod:`fastbp.jit.tracing`)."""

#: An op applied; ``backward()`` called; a recorded method call (an optimizer's step).
OP, BACKWARD, CALL = 0, 1, 2
