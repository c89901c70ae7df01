"""billing-sync: trigger-maintained billing accounts and the `sync-admin` CLI that rolls them out."""

__version__ = "0.1.0"
