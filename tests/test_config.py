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


# -- RETURNN's config names ------------------------------------------------------------------------------------


def test_use_tensorflow_selects_tensorflow_and_backend_wins():
    assert resolve_backend(load_config_text("use_tensorflow = True\n"), None, {}) == "tensorflow"
    assert resolve_backend(load_config_text("use_tensorflow = True\nbackend = 'torch'\n"), None, {}) == "torch"
    assert resolve_backend(load_config_text("use_tensorflow = True\n"), None, {ENV_VAR: "torch"}) == "torch"


def test_task_other_than_train_is_an_error_at_its_line():
    with pytest.raises(ConfigError, match=r"^t\.config:2: task = 'search': returnn-ls only trains"):
        load_config_text("num_epochs = 1\ntask = 'search'\n", "t.config")
    assert load_config_text("task = 'train'\n").get("task") == "train"


def test_returnn_names_that_change_nothing_are_accepted_quietly(capsys):
    from returnn_ls.training.config_names import IGNORED_NAMES

    text = "".join(f"{name} = 1\n" for name in IGNORED_NAMES) + "debug_add_check_numerics_ops = True\n"
    text += "import os\ndemo_name, _ = os.path.splitext(__file__)\n"
    load_config_text(text, "quiet.config")
    assert capsys.readouterr().err == ""


def test_unsupported_returnn_feature_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"u\.config:2: accum_grad_multiple_step = 2: gradient accumulation"):
        load_config_text("x = 1\naccum_grad_multiple_step = 2\n", "u.config")
    load_config_text("accum_grad_multiple_step = 1\ngradient_noise = 0.0\n")  # neutral values are fine


def test_each_warning_is_printed_once(capsys):
    for _ in range(2):
        load_config_text("num_epoch = 3\n", "once.config")
    assert capsys.readouterr().err.count("did you mean 'num_epochs'") == 1


def test_getlogin_falls_back_to_the_user_name_while_the_config_runs(monkeypatch):
    import getpass
    import os

    def no_terminal():
        raise OSError(6, "No such device or address")

    monkeypatch.setattr(os, "getlogin", no_terminal)
    config = load_config_text("import os\nmodel = '/tmp/%s/model' % os.getlogin()\n")
    assert config.get("model") == f"/tmp/{getpass.getuser()}/model"
    assert os.getlogin is no_terminal  # restored afterwards


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("num_epochs", "5", 5),
        ("learning_rate", "+-0.5", -0.5),  # RETURNN's way to write a negative number
        ("optimizer", "{'class': 'sgd'}", {"class": "sgd"}),
        ("learning_rate_control", "newbob", "newbob"),  # not a literal: the text
        ("chunking", "0", "0"),  # the config's value is a str: the text stays a str, as in RETURNN
    ],
)
def test_plus_plus_overrides_a_config_name(name, text, expected):
    from returnn_ls.training.config import parse_overrides

    rest, pairs = parse_overrides(["train", "a.config", f"++{name}", text, "--no-progress"])
    assert rest == ["train", "a.config", "--no-progress"]
    config = load_config_text("num_epochs = 2\nchunking = '100:50'\n", "a.config", pairs)
    assert config.get(name) == expected


def test_plus_plus_of_an_unknown_name_warns_and_a_missing_value_is_a_usage_error(capsys):
    from returnn_ls.cli import main
    from returnn_ls.training.config import parse_overrides

    load_config_text("x = 1\n", "a.config", [("num_epoch", "3")])
    assert (
        "++num_epoch: unknown config name 'num_epoch' is ignored; did you mean 'num_epochs'?" in capsys.readouterr().err
    )
    config = load_config_text("smoothing_kind = 'loss'\n", "a.config", [("smoothing_kind", "gradient")])
    assert config.get("smoothing_kind") == "gradient" and capsys.readouterr().err == ""  # the config's own name
    with pytest.raises(ConfigError, match="'\\+\\+num_epochs' needs a name and a value"):
        parse_overrides(["train", "++num_epochs"])
    assert main(["train", "a.config", "++num_epochs"]) == 2


def test_num_inputs_and_num_outputs_make_extern_data():
    from returnn_ls.training.extern_data import extern_data_spec

    spec = extern_data_spec(load_config_text("num_inputs = 9\nnum_outputs = 2\n"))
    assert spec == {"data": {"dim": 9}, "classes": {"dim": 2, "sparse": True}}
    with pytest.raises(ConfigError, match="neither 'extern_data' nor 'num_inputs' and 'num_outputs'"):
        extern_data_spec(load_config_text("num_inputs = 9\n"))
