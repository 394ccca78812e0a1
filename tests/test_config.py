"""Config loading: Python assignments executed as code, backend precedence, errors with file and line."""

from __future__ import annotations

import pytest

from returnn_ls.training.config import ENV_VAR, ConfigError, load_config, load_config_text, resolve_backend


def test_config_is_executed_as_python_code():
    config = load_config_text("import math\nn = 3\nnum_epochs = n * 2\nlearning_rate = math.sqrt(1e-4)\n")
    assert config.get("num_epochs") == 6 and config.get("learning_rate") == pytest.approx(1e-2)
    assert config.get("batch_size") == 16  # the default
    assert "math" not in config.values


@pytest.mark.parametrize(
    ("cli", "env", "in_config", "expected"),
    [
        ("tensorflow", "torch", "torch", "tensorflow"),  # --backend wins
        (None, "tensorflow", "torch", "tensorflow"),  # then the environment
        (None, None, "tensorflow", "tensorflow"),  # then the config
        ("torch", None, None, "torch"),
    ],
)
def test_backend_precedence(cli, env, in_config, expected):
    config = load_config_text(f"backend = {in_config!r}\n" if in_config else "x = 1\n", "c.config")
    environ = {ENV_VAR: env} if env else {}
    assert resolve_backend(config, cli, environ) == expected


def test_missing_backend_gives_a_hint():
    config = load_config_text("num_epochs = 1\n", "c.config")
    with pytest.raises(ConfigError, match="no backend selected") as info:
        resolve_backend(config, None, {})
    assert "backend = " in str(info.value) and ENV_VAR in str(info.value) and "--backend" in str(info.value)


def test_unknown_backend_in_config_names_line_and_suggests():
    config = load_config_text("num_epochs = 1\nbackend = 'pytorch'\n", "c.config")
    with pytest.raises(ConfigError, match=r"^c\.config:2: unknown backend 'pytorch' from the config.*'torch'"):
        resolve_backend(config, None, {})


def test_unknown_backend_in_environment():
    with pytest.raises(ConfigError, match=f"unknown backend 'tf' from the environment variable {ENV_VAR}"):
        resolve_backend(load_config_text("backend = 'torch'\n"), None, {ENV_VAR: "tf"})


def test_config_not_found(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.config"):
        load_config(str(tmp_path / "nope.config"))


def test_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.config"
    path.write_text("backend = 'torch'\nnetwork = {\n  'a': {'class': 'linear',,}\n}\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: syntax error in config"):
        load_config(str(path))


def test_exception_in_config_names_line():
    with pytest.raises(ConfigError, match=r"^x\.config:3: config raised NameError"):
        load_config_text("a = 1\nb = 2\nc = undefined_name\n", "x.config")


def test_misspelled_top_level_name_warns(capsys):
    load_config_text("backend = 'torch'\nnum_epoch = 3\nmy_helper = 2\n", "w.config")
    err = capsys.readouterr().err
    assert "w.config:2: unknown config name 'num_epoch' is ignored; did you mean 'num_epochs'?" in err
    assert "my_helper" not in err


def test_default_config_is_embedded():
    config = load_config(None)
    assert config.filename == "<default config>"
    assert config.get("backend") == "torch" and config.get("network")["output"]["loss"] == "ce"


def test_line_of_network_layer():
    config = load_config_text("network = {\n  'a': {},\n  'b': {},\n}\n")
    assert config.line_of("network", "b") == 3 and config.line_of("network", "zz") == 1
