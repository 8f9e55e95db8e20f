import json

import pytest

from utils import online
from utils.scales import ParameterError, apply_scale, check_parameter

PRESETS = {
    "smoke": {"n_facts": 4, "lr": 0.1},
    "default": {
        "model_name": "smollm2-135m",
        "facts_source": "shipped",
        "n_facts": 160,
        "lr": 0.01,
        "layers": [0, 1],
    },
    "paper": {"model_name": "gpt2-xl", "facts_source": "known_1000", "n_facts": 1209},
}


def notebook(**overrides) -> dict:
    """A parameters cell's globals: the default preset, annotations, then the caller's overrides."""
    namespace = {
        "scale": "default",
        "dry_run": False,
        "prompt": "The Eiffel Tower is in",
        "seed": 0,
        "__annotations__": {"prompt": str, "seed": int, "dry_run": bool, "note": str | None},
        "note": None,
        **PRESETS["default"],
    }
    return {**namespace, **overrides}


def test_scale_fills_what_the_caller_did_not_change():
    namespace = notebook(scale="smoke", lr=0.5)
    assert apply_scale(namespace, PRESETS)["n_facts"] == 4
    assert namespace["n_facts"] == 4 and namespace["lr"] == 0.5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_facts": "abc"}, "n_facts must be a positive int, got 'abc'"),
        ({"n_facts": 0}, "n_facts must be a positive int, got 0"),
        ({"n_facts": True}, "n_facts must be a positive int, got True"),
        ({"prompt": ""}, "prompt must be non-empty"),
        ({"seed": "1"}, "seed must be a non-negative int, got '1'"),
        ({"lr": "fast"}, "lr must be a non-negative float, got 'fast'"),
        ({"layers": [0, "x"]}, "layers must be a list of non-negative int, got [0, 'x']"),
        ({"dry_run": "yes"}, "dry_run must be a bool, got 'yes'"),
        ({"note": 3}, "note must be a str or None, got 3"),
        ({"scale": "huge"}, "scale must be one of"),
    ],
)
def test_wrong_parameters_are_named(overrides, message):
    with pytest.raises(ParameterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        apply_scale(notebook(**overrides), PRESETS)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ParameterError, match="n_facts .*; prompt must be non-empty"):
        apply_scale(notebook(n_facts="abc", prompt=""), PRESETS)


def test_an_int_is_a_float_and_ranges_override_the_count_rule():
    apply_scale(notebook(lr=1), PRESETS)
    assert check_parameter("layer", 0, int, (0, 29)) is None
    assert check_parameter("frac", 1.5, float, (0, 1)) == "frac must be a float in [0, 1], got 1.5"
    with pytest.raises(ParameterError, match=r"lr must be a float in \[0, 0.1\], got 0.5"):
        apply_scale(notebook(lr=0.5), PRESETS, ranges={"lr": (0, 0.1)})


def test_a_scale_key_without_default_is_refused():
    with pytest.raises(KeyError, match="PRESETS\\['paper'\\] sets \\['extra'\\]"):
        apply_scale(notebook(scale="paper"), {**PRESETS, "paper": {"extra": 1}})


def test_dry_run_only_at_paper_scale():
    with pytest.raises(ParameterError, match="dry_run=True rehearses scale='paper'"):
        apply_scale(notebook(dry_run=True), PRESETS)


def test_paper_scale_offline_names_every_model_and_dataset(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(online.OnlineRequiredError) as err:
        apply_scale(notebook(scale="paper"), PRESETS)
    assert "model 'gpt2-xl' (model_name)" in str(err.value)
    assert "dataset 'known_1000' (facts_source)" in str(err.value) and "dry_run=True" in str(
        err.value
    )


def test_paper_dry_run_swaps_in_stand_ins_and_smoke_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBLAYER_LAB_CACHE", str(tmp_path))
    namespace = notebook(scale="paper", dry_run=True, lr=0.2)
    sizes = apply_scale(namespace, PRESETS)
    assert (
        namespace["model_name"] == "smollm2-135m" and sizes["n_facts"] == 4 and sizes["lr"] == 0.2
    )
    assert namespace["facts_source"] == str(tmp_path / "dry_run" / "known_1000.json")


def test_a_dry_run_preset_takes_precedence_over_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBLAYER_LAB_CACHE", str(tmp_path))
    presets = {**PRESETS, "dry_run": {"n_facts": 2}}
    sizes = apply_scale(notebook(scale="paper", dry_run=True), presets)
    assert sizes["n_facts"] == 2 and sizes["lr"] == 0.1  # lr: not in the dry_run preset, so smoke's
    assert apply_scale(notebook(scale="smoke"), presets)["n_facts"] == 4  # smoke runs keep smoke sizes
    with pytest.raises(KeyError, match="PRESETS\\['dry_run'\\] sets \\['typo'\\]"):
        apply_scale(notebook(scale="paper", dry_run=True), {**PRESETS, "dry_run": {"typo": 1}})


def test_whitespace_only_text_is_empty():
    with pytest.raises(ParameterError, match=r"prompt must be non-empty \(it holds only whitespace\)"):
        apply_scale(notebook(prompt="   "), PRESETS)


def test_an_injected_value_counts_as_set_even_when_it_equals_the_default():
    injected = "# Parameters\nscale = \"smoke\"\nn_facts = 160\n"
    namespace = notebook(scale="smoke", In=["", "scale = 'default'\nn_facts = 160\nlr = 0.01", injected, "apply_scale(...)"])
    sizes = apply_scale(namespace, PRESETS)
    assert sizes["n_facts"] == 160 and sizes["lr"] == 0.1  # n_facts was given, lr was not
    assert apply_scale(notebook(scale="smoke"), PRESETS)["n_facts"] == 4  # without an injected cell: equality


# ------------------------------------------------------------------- through papermill
PARAMETERS_CELL = """\
scale: str = "default"
model_name: str = "smollm2-135m"
n_norm_tokens: int = 16_384
n_facts: int = 100
recompute_baselines: bool = False
prompt: str = "The Eiffel Tower is located in the city of"
results_dir: str = "out"
"""
SETUP_CELL = """\
import json
from utils.scales import apply_scale
PRESETS = {
    "smoke": {"n_norm_tokens": 256, "n_facts": 4, "recompute_baselines": True},
    "default": {"model_name": "smollm2-135m", "n_norm_tokens": 16_384, "n_facts": 100, "recompute_baselines": False},
    "paper": {"model_name": "gpt2", "n_facts": 1000},
}
sizes = apply_scale(globals(), PRESETS)
with open("resolved.json", "w") as handle:
    json.dump(sizes, handle)
"""


@pytest.fixture(scope="module")
def parameters_notebook(tmp_path_factory):
    import nbformat

    folder = tmp_path_factory.mktemp("parameters")
    parameters = nbformat.v4.new_code_cell(PARAMETERS_CELL)
    parameters.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell(SETUP_CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "params.ipynb")
    return folder / "params.ipynb"


def _papermill(notebook, tmp_path, **parameters) -> dict:
    """Run the notebook with papermill ``-p`` overrides in ``tmp_path``; what apply_scale resolved."""
    import papermill

    papermill.execute_notebook(
        str(notebook), str(tmp_path / "out.ipynb"), parameters=parameters, cwd=str(tmp_path),
        kernel_name="python3", progress_bar=False, log_output=False,
    )
    return json.loads((tmp_path / "resolved.json").read_text())


@pytest.mark.notebook
def test_papermill_overrides_are_kept_whatever_their_value(parameters_notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the paper preset's gpt2 would need the network: it must not be asked for
    paper = _papermill(parameters_notebook, tmp_path, scale="paper", model_name="smollm2-135m")
    assert paper["model_name"] == "smollm2-135m" and paper["n_facts"] == 1000
    smoke = _papermill(parameters_notebook, tmp_path, scale="smoke", n_norm_tokens=16_384, recompute_baselines=False)
    assert smoke == {"model_name": "smollm2-135m", "n_norm_tokens": 16_384, "n_facts": 4, "recompute_baselines": False}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.ipynb", "resolved.json"]  # the claim's lock went with the kernel


@pytest.mark.notebook
@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"promt": "Paris is in"}, "unknown parameter 'promt'; did you mean 'prompt'?"),
        ({"scale": "smoke", "n_norm_token": 64}, "unknown parameter 'n_norm_token'; did you mean 'n_norm_tokens'?"),
        ({"prompt": "   "}, r"prompt must be non-empty \(it holds only whitespace\)"),
    ],
    ids=["misspelt", "misspelt-size", "whitespace"],
)
def test_papermill_run_stops_on_a_misspelt_name_or_blank_text(parameters_notebook, tmp_path, parameters, message):
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError, match=message) as error:
        _papermill(parameters_notebook, tmp_path, **parameters)
    assert error.value.ename == "ParameterError"


def test_a_default_of_none_takes_its_type_from_the_annotation():
    """A preset value of None ("from the model", as notebook 03's tc_layers) is typed by the
    parameters cell's annotation, so a smaller scale's list is accepted and a wrong type is not."""
    presets = {"smoke": {"layers": [0, 1]}, "default": {"layers": None}}
    namespace = {"scale": "smoke", "layers": None, "__annotations__": {"layers": list[int] | None}}
    assert apply_scale(namespace, presets)["layers"] == [0, 1]
    with pytest.raises(ParameterError, match="layers must be"):
        apply_scale({**namespace, "scale": "default", "layers": "all"}, presets)
