"""The API's routes, one module per concern; each exposes ``build(ctx) -> APIRouter``."""
