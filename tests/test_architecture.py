"""ARCHITECTURE.md stays true: every package and every module in src/ is named in it."""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_package_and_module_is_named_in_architecture_md():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    packages = sorted(p.name for p in (ROOT / "src").iterdir() if (p / "package.xml").exists())
    modules = sorted(f for p in packages for f in (ROOT / "src" / p / p).rglob("*.py")
                     if f.name != "__init__.py") if packages else []
    assert "sefm_interfaces" in packages and len(modules) > 30
    missing = [p for p in packages if f"`{p}`" not in text]
    missing += [str(m.relative_to(ROOT)) for m in modules if f"`{m.stem}`" not in text]
    assert not missing, f"not named in ARCHITECTURE.md: {missing}"
