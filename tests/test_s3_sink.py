"""The S3 sink's pure pieces: where credentials come from, how botocore errors read, the
object_store options delta-rs gets, and the ``[s3]`` config section."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from async_amp.config import S3Config
from async_amp.config.load import load_config
from async_amp.errors import ConfigError, CredentialsError, StorageError
from async_amp.output.stores.s3_errors import ErrorTranslator, credentials_from
from async_amp.output.stores.s3_options import object_store_options

KEY_ID, SECRET, TOKEN = "AKIAEXAMPLEKEY0001", "s3cr3t/example+key", "session-token-example"


def client_error(code: str, status: int, message: str = "", **extra: str) -> ClientError:
    response: dict[str, object] = {
        "Error": {"Code": code, "Message": message, **extra},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
    }
    return ClientError(response, "PutObject")  # type: ignore[arg-type]


def translator(endpoint: str | None = "http://127.0.0.1:9000") -> ErrorTranslator:
    return ErrorTranslator(
        bucket="lake",
        region="us-east-1",
        endpoint_url=endpoint,
        auth_source="AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
        secrets=[KEY_ID, SECRET, TOKEN],
    )


def test_credentials_come_from_env_keys_then_profile_then_the_chain() -> None:
    found, source, profile = credentials_from(
        {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}
    )
    assert found == {
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
        "aws_session_token": TOKEN,
    }
    assert profile is None and KEY_ID not in source
    assert credentials_from({"AWS_PROFILE": "lake-writer"})[1:] == (
        "AWS_PROFILE=lake-writer",
        "lake-writer",
    )
    found, source, profile = credentials_from({})
    assert found == {} and profile is None and "credential chain" in source
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY is not set"):
        credentials_from({"AWS_ACCESS_KEY_ID": KEY_ID})


@pytest.mark.parametrize(
    ("error", "kind", "expected"),
    [
        (client_error("SignatureDoesNotMatch", 403), CredentialsError, "were rejected"),
        (
            client_error("InvalidAccessKeyId", 403, f"key {KEY_ID} unknown"),
            CredentialsError,
            "rejected",
        ),
        (client_error("AccessDenied", 403), CredentialsError, "they need s3:PutObject"),
        (client_error("NoSuchBucket", 404), ConfigError, "bucket lake does not exist"),
        # A wrong region is unit-tested only: moto 5.2.5's server answers list, put and
        # multipart calls on a bucket made in eu-west-1 with 200 to a client signing for
        # us-east-1 (it checks no request's region against the bucket's; it only refuses a
        # CreateBucket whose LocationConstraint does not match), where S3 answers these two.
        (
            client_error("AuthorizationHeaderMalformed", 400, "wrong region", Region="eu-west-1"),
            ConfigError,
            'set [s3] region = "eu-west-1"',
        ),
        (client_error("PermanentRedirect", 301), ConfigError, "check [s3] region, endpoint_url"),
        (client_error("SlowDown", 503, f"slow down {SECRET}"), StorageError, "503 SlowDown"),
        (NoCredentialsError(), CredentialsError, "set AWS_ACCESS_KEY_ID"),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9000/lake"),
            StorageError,
            "cannot reach http://127.0.0.1:9000 to write s3://lake/a/b.json (connection failed)",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_errors_read_as_one_clear_line_without_secrets(
    error: Exception, kind: type[Exception], expected: str
) -> None:
    translated = translator().translate(error, "write", "a/b.json", "s3:PutObject")
    assert type(translated) is kind
    text = str(translated)
    assert expected in text, text
    assert "\n" not in text
    for secret in (KEY_ID, SECRET, TOKEN):
        assert secret not in text


def test_object_store_options_for_delta_rs() -> None:
    environ = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    local = S3Config(bucket="lake", endpoint_url="http://127.0.0.1:9000/", addressing_style="path")
    assert object_store_options(local, environ) == {
        "aws_region": "us-east-1",
        "aws_conditional_put": "etag",
        "aws_endpoint_url": "http://127.0.0.1:9000",
        "aws_allow_http": "true",
        "aws_virtual_hosted_style_request": "false",
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
    }
    aws = S3Config(bucket="lake")
    assert object_store_options(aws, {"AWS_REGION": "eu-west-1"}) == {
        "aws_region": "eu-west-1",
        "aws_conditional_put": "etag",
    }


def test_s3_section_is_parsed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[output]\nsink = "s3"\n[s3]\nbucket = "my-lake.events"\nregion = "eu-west-1"\n'
        'endpoint_url = "https://storage.googleapis.com"\naddressing_style = "path"\n'
    )
    config = load_config(path, environ={})
    assert config.output.sink == "s3"
    assert config.s3 == S3Config(
        bucket="my-lake.events",
        region="eu-west-1",
        endpoint_url="https://storage.googleapis.com",
        addressing_style="path",
    )
    path.write_text('[s3]\nbucket = "Bad_Bucket"\naddressing_style = "sideways"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "[s3] bucket" in str(caught.value) and "[s3] addressing_style" in str(caught.value)
