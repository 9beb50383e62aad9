# syntax error
model = dict(
    type="X",
    depth=50 50)
