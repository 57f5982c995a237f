from pathlib import Path

import pytest

from gima_server.config import ConfigError, Settings, unknown_variables


def test_defaults_run_on_one_box_with_no_services() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.data_dir, s.agent, s.redis_url) == ("127.0.0.1", 8080, Path("./data"), "demo", "")
    assert (s.demo_tokens_per_s, s.demo_first_token_ms, s.heartbeat_s, s.drain_s) == (40, 150, 15, 120)
    assert s.sqlite_path == Path("data/gima.sqlite3") and s.checkpoint_every == 32 and s.max_content_bytes == 32768


def test_environment_and_overrides() -> None:
    env = {"GIMA_PORT": "9000", "GIMA_DEMO_TOKENS_PER_S": "0", "GIMA_MIGRATION_ENABLED": "on",
           "GIMA_ALLOWED_ORIGINS": "https://a.example, https://b.example", "GIMA_SECRET_KEY": "k" * 32 + "," + "j" * 32}
    s = Settings.from_env(env, port=9100)
    assert s.port == 9100 and s.demo_tokens_per_s == 0 and s.migration_enabled
    assert s.allowed_origins == ("https://a.example", "https://b.example") and len(s.secret_keys) == 2


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GIMA_PORT": "eighty"}, "GIMA_PORT"),
        ({"GIMA_PORT": "70000"}, "GIMA_PORT"),
        ({"GIMA_HEARTBEAT_S": "0"}, "GIMA_HEARTBEAT_S"),
        ({"GIMA_AGENT": "gpt"}, "GIMA_AGENT"),
        ({"GIMA_MIGRATION_ENABLED": "maybe"}, "GIMA_MIGRATION_ENABLED"),
        ({"GIMA_STORE_URL": "mysql://x"}, "GIMA_STORE_URL"),
        ({"GIMA_REDIS_URL": "http://x"}, "GIMA_REDIS_URL"),
        ({"GIMA_ALLOWED_ORIGINS": "*"}, "GIMA_ALLOWED_ORIGINS"),
        ({"GIMA_SECRET_KEY": "short"}, "GIMA_SECRET_KEY"),
        ({"GIMA_LOG_FORMAT": "xml"}, "GIMA_LOG_FORMAT"),
        ({"GIMA_EXTERNAL_JWT_ISSUER": "https://a.example"}, "GIMA_EXTERNAL_JWT_SECRET"),
        ({"GIMA_EXTERNAL_JWT_SECRET": "s" * 40, "GIMA_EXTERNAL_JWT_AUDIENCE": "w"}, "GIMA_EXTERNAL_JWT_ISSUER"),
        ({"GIMA_EXTERNAL_JWT_SECRET": "s" * 40, "GIMA_EXTERNAL_JWT_ISSUER": "https://a.example"}, "GIMA_EXTERNAL_JWT_AUDIENCE"),
        ({"GIMA_EXTERNAL_JWT_SECRET": "short", "GIMA_EXTERNAL_JWT_ISSUER": "i", "GIMA_EXTERNAL_JWT_AUDIENCE": "a"},
         "GIMA_EXTERNAL_JWT_SECRET"),
        ({"GIMA_EXTERNAL_JWT_SECRET": "s" * 40, "GIMA_EXTERNAL_JWT_JWKS_URL": "https://a.example/jwks",
          "GIMA_EXTERNAL_JWT_ISSUER": "i", "GIMA_EXTERNAL_JWT_AUDIENCE": "a"}, "GIMA_EXTERNAL_JWT_SECRET"),
        ({"GIMA_EXTERNAL_JWT_JWKS_URL": "ftp://a.example/jwks", "GIMA_EXTERNAL_JWT_ISSUER": "i",
          "GIMA_EXTERNAL_JWT_AUDIENCE": "a"}, "GIMA_EXTERNAL_JWT_JWKS_URL"),
        ({"GIMA_EXTERNAL_JWT_SECRET": "s" * 40, "GIMA_EXTERNAL_JWT_ISSUER": "gima-server",
          "GIMA_EXTERNAL_JWT_AUDIENCE": "a"}, "GIMA_EXTERNAL_JWT_ISSUER"),
        ({"GIMA_EXTERNAL_JWT_LEEWAY_S": "3600"}, "GIMA_EXTERNAL_JWT_LEEWAY_S"),
        ({"GIMA_REDIS_MAX_CONNECTIONS": "1"}, "GIMA_REDIS_MAX_CONNECTIONS"),
        ({"GIMA_TRUSTED_PROXIES": "10.0.0.0/8, not-an-ip"}, "GIMA_TRUSTED_PROXIES"),
        ({"GIMA_GUEST_TTL_S": "5"}, "GIMA_GUEST_TTL_S"),
        ({"GIMA_GUEST_ACCESS": "sometimes"}, "GIMA_GUEST_ACCESS"),
        ({"GIMA_OIDC_ISSUER": "https://id.example"}, "GIMA_OIDC_CLIENT_ID"),
        ({"GIMA_OIDC_ISSUER": "id.example", "GIMA_OIDC_CLIENT_ID": "c", "GIMA_OIDC_CLIENT_SECRET": "s"}, "GIMA_OIDC_ISSUER"),
        ({"GIMA_OIDC_ISSUER": "https://id.example", "GIMA_OIDC_CLIENT_ID": "c", "GIMA_OIDC_CLIENT_SECRET": "s",
          "GIMA_OIDC_SCOPES": "email"}, "GIMA_OIDC_SCOPES"),
        ({"GIMA_MAX_CONVERSATION_BODY_BYTES": "lots"}, "GIMA_MAX_CONVERSATION_BODY_BYTES"),
        ({"GIMA_STORE_RETRY_S": "-1"}, "GIMA_STORE_RETRY_S"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert named in str(info.value) and "\n" not in str(info.value)


def test_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    first, second = s.with_secret(), s.with_secret()
    assert first.secret_keys == second.secret_keys and len(first.secret_keys[0]) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_secrets_stay_out_of_the_settings_repr() -> None:
    s = Settings(secret_keys=("k" * 40,), openai_api_key="sk-top-secret", anthropic_api_key="ant-secret",
                 redis_url="redis://:hunter2@cache:6379/0", store_url="mongodb://user:pw123@db/gima",
                 oidc_client_secret="oidc-shh")
    text = repr(s)
    for secret in ("k" * 40, "sk-top-secret", "ant-secret", "hunter2", "pw123", "oidc-shh"):
        assert secret not in text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GIMA_PORT": "abc"}, "GIMA_PORT must be a port number 0-65535, got 'abc'"),
        ({"GIMA_PORT": "70000"}, "GIMA_PORT must be a port number 0-65535, got '70000'"),
        ({"GIMA_HEARTBEAT_S": "soon"}, "GIMA_HEARTBEAT_S must be a number > 0, got 'soon'"),
        ({"GIMA_DEMO_REPLY_WORDS": "1.5"}, "GIMA_DEMO_REPLY_WORDS must be a whole number > 0, got '1.5'"),
        ({"GIMA_COOKIE_SECURE": "maybe"}, "GIMA_COOKIE_SECURE must be one of on/off, true/false, 1/0, got 'maybe'"),
        ({"GIMA_REPLAY_RETENTION_MB": "-1"},
         "GIMA_REPLAY_RETENTION_MB must be >= 0 (megabytes of finished replies kept for replay), got '-1.0'"),
    ],
)
def test_a_bad_value_is_one_line_saying_what_was_expected(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert str(info.value) == message


def test_unknown_variables_are_found_with_the_closest_name() -> None:
    env = {"GIMA_REDIS_ULR": "x", "GIMA_PORT": "1", "GIMA_WHATEVER": "1", "GIMA_TEST_MONGODB_URI": "x", "PATH": "/"}
    assert unknown_variables(env) == [("GIMA_REDIS_ULR", "GIMA_REDIS_URL"), ("GIMA_WHATEVER", None)]


@pytest.mark.parametrize(("env", "extra"), [({"GIMA_REDIS_URL": "redis://127.0.0.1:6390"}, "redis"),
                                            ({"GIMA_STORE_URL": "mongodb://127.0.0.1:27017/gima"}, "mongo"),
                                            ({"GIMA_STORE_URL": "postgresql://127.0.0.1:5432/gima"}, "postgres")])
def test_a_setting_whose_extra_is_missing_names_the_extra(
    env: dict[str, str], extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # this machine has every extra: hide the one asked for
                        lambda name, *a: None if name in ("redis", "pymongo", "asyncpg") else real(name, *a))
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert str(info.value).endswith(f"pip install 'gima-server[{extra}]'")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GIMA_REDIS_URL": "redis://h:6379/0", "GIMA_REDIS_MODE": "shards"},
         "GIMA_REDIS_MODE must be single, sentinel or cluster, got 'shards'"),
        ({"GIMA_REDIS_MODE": "cluster"},
         "GIMA_REDIS_MODE=cluster needs GIMA_REDIS_URL naming one or more cluster nodes (redis://h1:6379,h2:6379)"),
        ({"GIMA_REDIS_URL": "redis://h1:26379,h2:26379/0", "GIMA_REDIS_MODE": "sentinel"},
         "GIMA_REDIS_MODE=sentinel needs GIMA_REDIS_URL (the sentinels, redis://h1:26379,h2:26379/0) and "
         "GIMA_REDIS_SENTINEL_MASTER (the master's name)"),
    ],
)
def test_redis_topology_settings_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env).validate()
    assert str(info.value) == message


@pytest.mark.parametrize(("variable", "value", "extra", "module"), [
    ("SENTRY_DSN", "http://key@127.0.0.1:9/1", "sentry", "sentry_sdk"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318", "otel", "opentelemetry"),
    ("GIMA_STRIPE_WEBHOOK_SECRET", "whsec_test", "stripe", "stripe"),
])
def test_error_reporting_tracing_and_stripe_name_their_extra_when_it_is_missing(
    variable: str, value: str, extra: str, module: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    import importlib.util

    plans = tmp_path / "plans.toml"
    plans.write_text('[plans.free]\ntokens_per_day = 10\n')
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    monkeypatch.setenv(variable, value)  # SENTRY_DSN and OTEL_* are read as their own SDKs read them
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: value, "GIMA_PLANS_FILE": str(plans)})
    assert str(info.value) == f"{variable} needs the {extra} extra: pip install 'gima-server[{extra}]'"
