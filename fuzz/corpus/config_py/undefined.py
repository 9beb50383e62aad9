depth = 50
model = dict(depth=dept)
