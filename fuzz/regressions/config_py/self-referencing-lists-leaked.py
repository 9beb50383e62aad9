69# Python and mmengine semantics the evaluator must reproduce.
_base_ = ['./base_a.py', 'sub/base_b.py']
import math

half = 1 / 2
floor = 7 // 2
neg_floor = -7 // 2
mod = -7 % 3
fmodr = 2**10
inv = 2**-1
fl = 3 * 1.0
big = 1 << 20
tup = (1, 2.0, 'x', None, )
test_pipeline = _base_.pipeline
test_pipeline[0].scne = _base_.pipeline
test_pipeline[1].scale = (320, 320)
train = dict(pipeline=test_pipeline)
test_pipeline.append(dict(type='Pack'))
# `_delete_`:{{_base_. reas'
env = '{{$MMCOMPAT_CASE_UNSET_ENV:/def = t/path}}'
