# The Python twin of equivalent.toml.
_base_ = './base_a.py'
lr = 0.1
flag = None
shape = (1, 3, 640, 640)
model = dict(backbone=dict(depth=18))
