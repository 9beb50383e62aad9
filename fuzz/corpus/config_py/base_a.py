# Base for semantics.py (mmcompat config tests; references by ../../generate/config_corpus.py).
max_epochs = 300
num_epochs_stage2 = 20
lr = 0.004
lst = [1, 2, 3]
model = dict(
    type='Det',
    backbone=dict(type='Net', depth=50, out=(1, 2, 3)),
    neck=dict(type='FPN', in_channels=[256, 512]))
pipeline = [
    dict(type='Load'),
    dict(type='Resize', scale=(640, 640), keep_ratio=True),
]
backend_args = None
data_root = 'data/coco/'
train_dataloader = dict(batch_size=2, sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(batch_size=1, sampler=dict(type='DefaultSampler', shuffle=False))
