import os

with open(os.path.join(os.path.dirname(__file__), "VERSION")) as f:
    version = f.read().split()[0]
print(f"{os.environ.get('GREETING', 'hello')} (app version {version})")
