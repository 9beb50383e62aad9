_base_ = ['../base_c.py', '../base_c.py']
