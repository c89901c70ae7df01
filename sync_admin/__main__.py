"""`python -m sync_admin`: the executable's entry point (sync_admin/interrupts.py)."""

from sync_admin.interrupts import main

main()
