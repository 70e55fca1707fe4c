"""Database layer: the seed's models (shared with the marketplace's Prisma services), the app's own
tables, engine and unit-of-work helpers, and the Alembic wrappers."""
