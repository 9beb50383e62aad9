# A base from another package: `_scope_` goes into its outermost typed dicts.
_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'
model = dict(backbone=dict(depth=18), bbox_head=dict(num_classes=3))
extra = dict(type='Mine')
