import subprocess
x = subprocess.run(['true'])
