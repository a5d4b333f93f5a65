"""Every models module, in the order their tables depend on each other. Alembic and privacy read this list."""

from models import groups

# Modules that store data about a person provide export_user_data and erase_user_data.
MODULES = [groups]

__all__ = ["MODULES", "groups"]
