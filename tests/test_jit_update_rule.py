"""``Optimizer.update_rule``, which a compiled step asks at every call, is cached while the
hyperparameters are the same objects and the step count changes none of its scalars."""

import numpy as np

import fastbp as fb
from fastbp import optim


def _sgd(**kwargs):
    w = fb.tensor(np.ones(3, np.float32), requires_grad=True)
    opt = optim.SGD([w], lr=0.1, **kwargs)
    return w, opt, opt.flat_buffers[0]


def _one_step(w, opt):
    opt.zero_grad()
    (w * w).sum().backward()
    opt.step()


def test_same_rule_while_nothing_changed_a_new_one_when_a_hyperparameter_did():
    w, opt, flat = _sgd()
    first = opt.update_rule(flat)
    assert opt.update_rule(flat) is first
    assert first.scalars[-1] is True  # the first step starts the momentum buffer
    _one_step(w, opt)
    after = opt.update_rule(flat)
    assert after is not first and after.scalars[-1] is False
    _one_step(w, opt)
    assert opt.update_rule(flat) is after  # plain SGD: later steps share one rule
    opt.param_groups[0]["lr"] = 0.5
    changed = opt.update_rule(flat)
    assert changed is not after
    assert changed.scalars[0] == 0.5 and changed.fold == (-0.5, 1.0)
    opt.param_groups[0]["momentum"] = 0.9
    assert opt.update_rule(flat).fold is None
    opt.param_groups[0]["maximize"] = True
    assert opt.update_rule(flat) is None


def test_adam_gets_the_step_number_of_each_call():
    w = fb.tensor(np.ones(3, np.float32), requires_grad=True)
    opt = optim.Adam([w], lr=0.1)
    flat = opt.flat_buffers[0]
    counts = []
    for _ in range(3):
        counts.append(opt.update_rule(flat).scalars[5])
        _one_step(w, opt)
    assert counts == [1, 2, 3]
