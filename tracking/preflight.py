"""A check that the tracking server can take a run, made before any training starts.

MLflow's client retries a failing request for minutes (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``),
and a wrong password or a broken artifact store only shows when the first metric or
checkpoint is logged, after the data is loaded and the model built. This check makes
a few requests without retries, so each of those problems fails within seconds with
a message that names the variable to fix.

For the embedded stores (``sqlite:///...``, a file path, a database URI) it returns
at once: there is no server to check.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from urllib.parse import urlparse

import requests

logger = logging.getLogger(__name__)

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
USERNAME_VARIABLE = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VARIABLE = "MLFLOW_TRACKING_PASSWORD"

# Server-side settings of the artifact proxy, named in messages about the artifact store.
_SERVER_ARTIFACT_VARIABLES = "MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, --artifacts-destination"


class TrackingServerError(RuntimeError):
    """The tracking server cannot take a run; the message names the variable to fix."""


class _Server:
    """Requests to one tracking server, with the client's credentials and TLS settings, without retries."""

    def __init__(self, uri: str, timeout: float):
        from mlflow.utils.credentials import get_default_host_creds

        self.uri = uri.rstrip("/")
        self.timeout = timeout
        self.creds = get_default_host_creds(uri)

    @property
    def username(self) -> str | None:
        return self.creds.username

    def get(self, endpoint: str, params: dict | None = None, authenticate: bool = True) -> requests.Response:
        kwargs: dict = {"params": params, "timeout": self.timeout}
        if authenticate and self.creds.username and self.creds.password:
            kwargs["auth"] = (self.creds.username, self.creds.password)
        if authenticate and self.creds.token:
            kwargs["headers"] = {"Authorization": f"Bearer {self.creds.token}"}
        if self.creds.ignore_tls_verification:
            kwargs["verify"] = False
        elif self.creds.server_cert_path:
            kwargs["verify"] = self.creds.server_cert_path
        if self.creds.client_cert_path:
            kwargs["cert"] = self.creds.client_cert_path
        try:
            return requests.get(f"{self.uri}{endpoint}", **kwargs)
        except requests.Timeout:
            raise TrackingServerError(
                f"The tracking server at {TRACKING_URI_VARIABLE}={self.uri} did not respond within {self.timeout:.0f} s. "
                f"Check that it is running and that {TRACKING_URI_VARIABLE} names its host and port."
            ) from None
        except requests.ConnectionError as error:
            raise TrackingServerError(
                f"The tracking server at {TRACKING_URI_VARIABLE}={self.uri} is unreachable ({_root_cause(error)}). "
                f"Start it (python -m tracking.stack start) or set {TRACKING_URI_VARIABLE} to a running server; "
                f"unset {TRACKING_URI_VARIABLE} to log to the local sqlite:///mlflow.db instead."
            ) from None


def _root_cause(error: BaseException) -> str:
    while error.__context__ is not None and error.__context__ is not error:
        error = error.__context__
    return str(error) or type(error).__name__


def _error_message(response: requests.Response) -> tuple[str, str]:
    """Return MLflow's (error_code, message) from an error response, or ('', the body's start)."""
    if "html" in response.headers.get("Content-Type", ""):
        # An error page of the web framework; the server's log has the cause.
        return "", ""
    try:
        body = response.json()
    except (json.JSONDecodeError, ValueError):
        return "", response.text[:300].strip()
    if not isinstance(body, dict):
        return "", response.text[:300].strip()
    return str(body.get("error_code", "")), str(body.get("message", "")).strip().rstrip(".")


def _describe(response: requests.Response) -> str:
    """Return "HTTP <status>" followed by MLflow's error code and message when the response has them."""
    code, message = _error_message(response)
    detail = ": ".join(part for part in (code, message) if part)
    return f"HTTP {response.status_code} {detail}" if detail else f"HTTP {response.status_code}"


def _check_credential_pair() -> None:
    username, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if bool(username) != bool(password):
        missing, present = (PASSWORD_VARIABLE, USERNAME_VARIABLE) if username else (USERNAME_VARIABLE, PASSWORD_VARIABLE)
        raise TrackingServerError(f"{present} is set but {missing} is not: basic authentication needs both. Set {missing}.")


def _check_health(server: _Server) -> None:
    response = server.get("/health", authenticate=False)
    if response.status_code != 200:
        raise TrackingServerError(
            f"{TRACKING_URI_VARIABLE}={server.uri} does not look like an MLflow tracking server: GET /health returned "
            f"HTTP {response.status_code}. Set {TRACKING_URI_VARIABLE} to the server's base URL, such as http://127.0.0.1:5000."
        )


def _check_login(server: _Server) -> None:
    response = server.get("/api/2.0/mlflow/experiments/search", params={"max_results": 1})
    if response.status_code == 401:
        if not server.username:
            raise TrackingServerError(
                f"The tracking server at {server.uri} requires a login, and no credentials are set. "
                f"Set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}."
            )
        raise TrackingServerError(
            f"The tracking server at {server.uri} rejects user {server.username!r}: the user does not exist or the password "
            f"is wrong. Fix {PASSWORD_VARIABLE} (or {USERNAME_VARIABLE})."
        )
    if response.status_code == 403:
        raise TrackingServerError(
            f"User {server.username!r} may not search experiments on {server.uri}. Ask an admin for READ permission, "
            f"or set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} to another user."
        )
    if response.status_code != 200:
        raise TrackingServerError(f"The tracking server at {server.uri} failed to search experiments: {_describe(response)}.")


def _artifact_uri(server: _Server) -> tuple[str, str]:
    """Return (where it came from, artifact URI) of the run or experiment this process will log to."""
    if run_id := os.environ.get("MLFLOW_RUN_ID"):
        response = server.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id})
        if response.status_code == 200:
            return f"run {run_id}", response.json()["run"]["info"]["artifact_uri"]
        raise TrackingServerError(f"MLFLOW_RUN_ID={run_id} cannot be read from {server.uri}: {_describe(response)}. Unset MLFLOW_RUN_ID or fix it.")
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if experiment_id:
        response = server.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment_id})
        source = f"experiment {experiment_id} (MLFLOW_EXPERIMENT_ID)"
    elif experiment_name:
        response = server.get("/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment_name})
        source = f"experiment {experiment_name!r} (MLFLOW_EXPERIMENT_NAME)"
        if response.status_code == 404:
            # A new experiment takes the server's default artifact root, as the Default experiment has.
            response = server.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"})
            source = "the Default experiment"
    else:
        response = server.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"})
        source = "the Default experiment"
    if response.status_code != 200:
        raise TrackingServerError(f"Reading {source} from {server.uri} failed: {_describe(response)}.")
    return source, response.json()["experiment"]["artifact_location"]


def _check_proxied_artifacts(server: _Server, source: str, artifact_uri: str) -> None:
    """List the artifact root through the server's proxy, which makes the server call the S3 store."""
    parsed = urlparse(artifact_uri)
    path = parsed.path.lstrip("/")
    response = server.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": path})
    if response.status_code == 200:
        return
    code, message = _error_message(response)
    if response.status_code == 403:
        raise TrackingServerError(
            f"User {server.username!r} may not read the artifacts of {source} on {server.uri}. Ask an admin for permission, "
            f"or log to another experiment (MLFLOW_EXPERIMENT_NAME)."
        )
    lowered = message.lower()
    if "access key" in lowered:
        fix = "AWS_ACCESS_KEY_ID on the server"
    elif "signature" in lowered:
        fix = "AWS_SECRET_ACCESS_KEY on the server"
    elif "bucket does not exist" in lowered:
        fix = "the bucket of the server's --artifacts-destination (MLFLOW_ARTIFACTS_DESTINATION), or create that bucket"
    elif response.status_code == 404 and not code:
        fix = "the server's options: it does not serve artifacts, so start it with --serve-artifacts"
    elif response.status_code >= 500:
        fix = "MLFLOW_S3_ENDPOINT_URL on the server: the server could not reach its S3 endpoint (its log has the details)"
    else:
        fix = f"the server's artifact store settings ({_SERVER_ARTIFACT_VARIABLES})"
    raise TrackingServerError(
        f"The tracking server at {server.uri} cannot reach its artifact store for {source} ({artifact_uri}): "
        f"{_describe(response)}. Fix {fix}. Clients need no S3 keys: the server's artifact proxy uses its own."
    )


def _check_direct_s3(source: str, artifact_uri: str, timeout: float) -> None:
    """Check that this client can reach an ``s3://`` artifact location itself (no artifact proxy)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket = urlparse(artifact_uri).netloc
    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None
    client = boto3.client(
        "s3", endpoint_url=endpoint,
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
    )
    try:
        client.head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise TrackingServerError(
            f"{source} stores artifacts directly in {artifact_uri}, so this client needs S3 keys, and none are set. "
            "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or have the server proxy artifacts (--serve-artifacts)."
        ) from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        fix = {"403": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "404": "the bucket name in the artifact location"}.get(code, "the S3 settings")
        raise TrackingServerError(f"S3 rejects access to bucket {bucket!r} for {source}: {error}. Fix {fix}.") from None
    except BotoCoreError as error:
        raise TrackingServerError(
            f"S3 bucket {bucket!r} for {source} is unreachable ({error}). Fix MLFLOW_S3_ENDPOINT_URL={endpoint!r}."
        ) from None


def check_tracking_server(tracking_uri: str | None = None, timeout: float = 5.0) -> None:
    """Raise TrackingServerError unless the tracking server can take a run with its artifacts.

    Checks, in order: that the credential variables come in pairs, that the server
    responds, that it accepts the credentials, and that its artifact store responds
    for the run or experiment that this process will log to. Each request waits at most
    ``timeout`` seconds and is not retried. Returns at once for URIs that are not
    ``http`` or ``https``.
    """
    uri = tracking_uri
    if uri is None and "mlflow" in sys.modules:
        # Respects mlflow.set_tracking_uri() as well as the environment.
        uri = sys.modules["mlflow"].get_tracking_uri()
    elif uri is None:
        # Without importing MLflow (seconds), so the embedded default costs nothing.
        uri = os.environ.get(TRACKING_URI_VARIABLE, "")
    if urlparse(uri).scheme not in ("http", "https"):
        logger.debug("Tracking URI %s needs no server; skipping the preflight check.", uri)
        return
    _check_credential_pair()
    server = _Server(uri, timeout)
    _check_health(server)
    _check_login(server)
    source, artifact_uri = _artifact_uri(server)
    scheme = urlparse(artifact_uri).scheme
    if scheme == "mlflow-artifacts":
        _check_proxied_artifacts(server, source, artifact_uri)
    elif scheme == "s3":
        _check_direct_s3(source, artifact_uri, timeout)
    elif scheme in ("", "file"):
        # NOTE: this works for a server used from its own machine only. Elsewhere each client
        # writes to its own disk, so the files never reach the server. A warning, not an error.
        logger.warning(
            "%s keeps artifacts in the local path %s: other machines will not see them. Start the server with "
            "--serve-artifacts and --artifacts-destination to share them.", source, artifact_uri,
        )
    logger.info("Tracking server %s is ready for %s (artifacts in %s).", uri, source, artifact_uri)
