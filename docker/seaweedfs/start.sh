#!/bin/sh
# Write the S3 identity from the environment, then start SeaweedFS as the native launcher
# does (tracking/stack/seaweed.py): one `weed mini` process with the bucket created.
set -eu

: "${S3_ACCESS_KEY:?is not set: give the S3 access key in docker/.env}"
: "${S3_SECRET_KEY:?is not set: give the S3 secret key in docker/.env}"

umask 077
cat > /tmp/s3-identities.json <<JSON
{"identities": [{"name": "mlflow-server",
  "credentials": [{"accessKey": "${S3_ACCESS_KEY}", "secretKey": "${S3_SECRET_KEY}"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON

exec weed mini -dir=/data -ip=seaweedfs -ip.bind=0.0.0.0 -s3.port=8333 \
  -s3.config=/tmp/s3-identities.json -bucket=mlflow \
  -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false -master.telemetry=false
