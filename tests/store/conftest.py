"""The store tests' S3: the deployment tests' moto server and buckets."""

from tests.deploy.conftest import s3, s3_endpoint  # noqa: F401  (fixtures)
