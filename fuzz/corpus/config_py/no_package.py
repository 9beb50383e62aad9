_base_ = 'mmcls::_base_/models/resnet18.py'
