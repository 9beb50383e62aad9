x = exec('y = 1')
