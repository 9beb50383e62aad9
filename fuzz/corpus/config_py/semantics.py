# Python and mmengine semantics the evaluator must reproduce.
_base_ = ['./base_a.py', 'sub/base_b.py']
import math

half = 1 / 2
floor = 7 // 2
neg_floor = -7 // 2
mod = -7 % 3
fmod = 7.5 % 2
power = 2**10
inv = 2**-1
fl = 3 * 1.0
big = 1 << 20
tup = (1, 2.0, 'x', None, True)
single = (5, )
nested = [(1, 2), [3, 4]]
stage2 = _base_.max_epochs - _base_.num_epochs_stage2
in_ch = _base_.model.neck.in_channels[0]
scaled = int(_base_.max_epochs * 1.2)
r = round(2.5), round(3.5), round(0.1234, 2)
fmt1 = f'{_base_.data_root}ann_{half}_{floor:03d}_{_base_.lr:.2e}_{0.1 + 0.2}_{1e-5}_{1e22}'
fmt2 = 'x_%s_%d_%.3f' % ('a', 3, 0.5)
fmt3 = '{}-{name}-{0}'.format(1, name='n') if False else '{}-{name}'.format(1, name='n')
smeth = 'A_b'.lower().replace('_', '-').split('-')
cond = 'yes' if _base_.max_epochs > 100 else 'no'
comp = [x * 2 for x in range(4) if x != 2]
dcomp = {f'k{i}': v for i, v in enumerate(['a', 'b'])}
gen = tuple(round(x) for x in [1.4, 2.6])
star = [*_base_.lst, 4]
dstar = dict(**dict(a=1), b=2)
strs = ('a' + 'b') * 2
cmp_chain = 1 < 2 <= 2
bools = (True and 0, None or 'd', not [])
slc = _base_.lst[::-1], _base_.lst[-2:]
get_default = getattr(_base_, 'missing', [1]) + [2]
has = hasattr(_base_, 'model'), hasattr(_base_, 'nope')
int_keys = {1: 'a', 2: 'b'}
_private = 1
__dunder = 2
pi2 = round(math.pi, 3)


def fn(x):
    return x


# In-place mutation of the live base.
_base_.lst.append(9)
model = _base_.model
model.backbone.depth = 101
model['neck'].update(dict(out_channels=128, in_channels=[1, 2]))
test_pipeline = _base_.pipeline
test_pipeline[1].scale = (320, 320)
train = dict(pipeline=test_pipeline)
test_pipeline.append(dict(type='Pack'))
# `_delete_`: replaces when the base has the key, leaks when it does not.
optim = dict(_delete_=True, type='Adam', lr=1e-3)
new_head = dict(_delete_=True, type='NewHead')
head = dict(num_classes=3)
# Aliasing is broken by mmengine's deepcopy before the merge pops `_delete_`.
val_dataloader = dict(_delete_=True, batch_size=4)
test_dataloader = val_dataloader
placeholder = dict(
    args={{_base_.backend_args}},
    root={{ _base_.data_root }},
    scale={{_base_.model.backbone.out}})
name = '{{ fileBasenameNoExtension }}'
ext = '{{fileExtname}}'
env = '{{$MMCOMPAT_CASE_UNSET_ENV:/default/path}}'
