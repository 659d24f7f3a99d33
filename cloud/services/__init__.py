"""Business logic, free of HTTP: routers call these, the worker and engine too."""


class ServiceError(Exception):
    """A refusal the API turns into `status` with `detail` (404, 409, 422 ...)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail
