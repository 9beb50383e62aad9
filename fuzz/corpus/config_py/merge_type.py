_base_ = '../base_a.py'
max_epochs = dict(value=3)
