"""The native tracking stack: PostgreSQL, SeaweedFS S3 and an authenticated MLflow server.

Start it from the command line with ``python -m tracking.stack start`` (see
``docs/tracking-server.md``), or from Python::

    stack = TrackingStack(StackConfig(state_dir=Path("/var/lib/kidney-ssl/stack")))
    stack.start()   # needs MLFLOW_AUTH_ADMIN_PASSWORD and MLFLOW_FLASK_SERVER_SECRET_KEY
    ...
    stack.stop()
"""

from tracking.stack.config import AdminCredentials, SeaweedPorts, StackConfig, StackConfigError, StackSecrets, free_port
from tracking.stack.launcher import ComponentStatus, TrackingStack
from tracking.stack.processes import StackError

__all__ = [
    "AdminCredentials", "ComponentStatus", "SeaweedPorts", "StackConfig", "StackConfigError", "StackError",
    "StackSecrets", "TrackingStack", "free_port",
]
