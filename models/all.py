"""Every models module, in the order their tables depend on each other. Alembic and privacy read this list."""

from models import boards, checkin, groups, points, shop

# Modules that store data about a person provide export_user_data and erase_user_data.
MODULES = [groups, points, checkin, shop]

__all__ = ["MODULES", "boards", "checkin", "groups", "points", "shop"]
