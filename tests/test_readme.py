"""The README stays true to the settings object."""

from lung_model.settings import PROJECT_ROOT, Settings


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias.choices[0] if field.validation_alias else None  # type: ignore[union-attr]
        variable = alias or f"LUNG_{name.upper()}"
        assert f"| `{variable}` |" in readme, f"{variable} is missing from the README"
