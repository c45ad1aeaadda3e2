"""The child every supervisor runs in `bench peers`: a Python process that starts and then sleeps."""

import time

while True:
    time.sleep(3600)
