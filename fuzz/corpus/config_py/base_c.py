default_scope = 'mmdet'
custom_imports = dict(imports=['mmdet.models'], allow_failed_imports=False)
