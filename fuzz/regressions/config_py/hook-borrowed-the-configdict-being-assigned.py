# Pytu
_base_ = ['./base_a.py', 'sub/base_b.py']


# ))
test_pipeline = _base_.pipeline
test_pipeline[1].s=dict(e=test_pipeline)
tfrom