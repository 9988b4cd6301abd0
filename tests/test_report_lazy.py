"""`medsentry.report` imports its table modules (and rich) only when a table is asked for."""

import subprocess
import sys

import medsentry.report as report


def test_every_exported_name_resolves_to_its_module_function() -> None:
    for name in report.__all__:
        value = getattr(report, name)
        assert callable(value), name
        assert value.__module__.startswith("medsentry.report."), (name, value.__module__)


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        report.no_such_renderer  # noqa: B018
    except AttributeError as e:
        assert "no_such_renderer" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def test_json_output_path_does_not_import_rich() -> None:
    code = (
        "import sys\n"
        "import medsentry.cli.main, medsentry.analysis\n"
        "from medsentry import report\n"
        "report.render_json\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))\n"
        "report.device_table\n"
        "print('rich.console' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "True"]
