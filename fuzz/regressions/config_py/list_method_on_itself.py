a = [1]
a.extend(a)
b = [2]
b += b
d = dict(x=1)
d.update(d)
e = [1, [2]]
c = e.count(e)
i = e.index([2])
e.remove([2])
